"""Post-deploy inference checks against a live endpoint (gRPC through Envoy, with tritonclient).

Entry point: :func:`run_checks`, which returns a :class:`Report` (table or JSON via
:mod:`pipelines.checks.output`). Each concern has its module: ``server`` (liveness, readiness,
served config), ``inference`` (synthetic and reference inferences), ``slo`` (load probe),
``auth`` (JWT enforced), ``scaling`` (Prometheus queries behind KEDA and the admission gate).
"""

from pipelines.checks.connection import Endpoint, EndpointError
from pipelines.checks.result import CheckResult, Report
from pipelines.checks.runner import run_checks

__all__ = ["CheckResult", "Endpoint", "EndpointError", "Report", "run_checks"]
