"""Names, labels and ports shared by every renderer (and by the local stack and the checks).

One place decides what things are called, so that the Envoy cluster address, the Prometheus
selectors, the NetworkPolicy and the Services can never drift apart.
"""

from __future__ import annotations

from pipelines.config.model import SiteDeployment

MANAGED_BY = "sonic-gitops"

# Triton's three endpoints (fixed by the image), Envoy's client listener, stats and admin.
TRITON_HTTP = 8000
TRITON_GRPC = 8001
TRITON_METRICS = 8002
ENVOY_GRPC = 8001
ENVOY_STATS = 9100
ENVOY_ADMIN = 9901  # bound to 127.0.0.1 inside the pod; never in a Service

ENVOY_UPSTREAM_CLUSTER = "triton"
ENVOY_HTTP_PREFIX = "triton_grpc"  # stat_prefix of the client-facing connection manager


def triton_name(p: SiteDeployment) -> str:
    return f"{p.name}-triton"


def envoy_name(p: SiteDeployment) -> str:
    return f"{p.name}-envoy"


def triton_service_host(p: SiteDeployment) -> str:
    """DNS name of the headless Triton Service: resolves to every ready pod IP."""
    return f"{triton_name(p)}.{p.namespace}.svc.cluster.local"


def labels(p: SiteDeployment, component: str) -> dict[str, str]:
    """Labels on every object of one component; a superset of :func:`selector`."""
    return {
        **selector(p, component),
        "app.kubernetes.io/part-of": "sonic",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "sonic.fastml.org/experiment": p.experiment,
        "sonic.fastml.org/site": p.site,
    }


def selector(p: SiteDeployment, component: str) -> dict[str, str]:
    """The stable subset of labels used in selectors (immutable on Deployments)."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": p.name}
