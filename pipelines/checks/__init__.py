"""Post-deploy inference checks against a live endpoint (gRPC through Envoy, with tritonclient).

Entry point: :func:`run_checks`, which returns a :class:`Report` (table or JSON via
:mod:`pipelines.checks.output`). Each concern has its module: ``server`` (liveness, readiness,
served config), ``inference`` (synthetic and reference inferences), ``slo`` (load probe),
``auth`` (JWT enforced), ``scaling`` (Prometheus queries behind KEDA and the admission gate).
The check spec the in-cluster check Job runs from is configuration: :mod:`pipelines.config.checkspec`.

The names below are imported on first use, so that importing a light module of this package does
not load the check runner and tritonclient (the ``checks`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.checks.connection import Endpoint, EndpointError
    from pipelines.checks.result import CheckResult, Report
    from pipelines.checks.runner import run_checks

_EXPORTS = {
    "CheckResult": "pipelines.checks.result",
    "Endpoint": "pipelines.checks.connection",
    "EndpointError": "pipelines.checks.connection",
    "Report": "pipelines.checks.result",
    "run_checks": "pipelines.checks.runner",
}

__all__ = ["CheckResult", "Endpoint", "EndpointError", "Report", "run_checks"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
