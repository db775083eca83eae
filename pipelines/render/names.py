"""Names, labels and ports shared by every renderer (and by the local stack and the checks).

One place decides what things are called, so that the Envoy cluster address, the Prometheus
selectors, the NetworkPolicy and the Services can never drift apart.
"""

from __future__ import annotations

from pipelines.config import model
from pipelines.config.model import SiteDeployment
from pipelines.config.ownership import ARGOCD_DIR, CODEOWNERS_FILE, RENDERED_DIR
from pipelines.config.reserved import PIPELINES_NAMESPACE

__all__ = ["ARGOCD_DIR", "CODEOWNERS_FILE", "PIPELINES_NAMESPACE", "RENDERED_DIR"]

MANAGED_BY = "sonic-gitops"

# Triton's three endpoints (fixed by the image), Envoy's client listener, stats and admin.
TRITON_HTTP = 8000
TRITON_GRPC = 8001
TRITON_METRICS = 8002
ENVOY_GRPC = 8001
ENVOY_STATS = 9100
ENVOY_ADMIN = 9901  # bound to 127.0.0.1 inside the pod; never in a Service

# How a client names a gRPC endpoint reached over TLS (an ingress): grpcs://HOST:PORT.
GRPC_TLS_SCHEME = "grpcs://"

ENVOY_UPSTREAM_CLUSTER = "triton"
ENVOY_HTTP_PREFIX = "triton_grpc"  # stat_prefix of the client-facing connection manager

# Triton's management protocols answer only calls carrying the gRPC header
# "triton-grpc-protocol-<TRITON_ADMIN_HEADER>" with the key of the namespace's Secret. The key
# reaches Triton's command line and Envoy's route through this environment variable, never as a
# value in the rendered files. The site admins create the Secret (docs/security.md).
TRITON_RESTRICTED_PROTOCOLS = ("model-repository", "shared-memory", "trace", "logging")
TRITON_ADMIN_HEADER = "sonic-admin"
TRITON_ADMIN_GRPC_HEADER = f"triton-grpc-protocol-{TRITON_ADMIN_HEADER}"
TRITON_ADMIN_SECRET = "sonic-triton-admin"
TRITON_ADMIN_SECRET_KEY = "key"
TRITON_ADMIN_ENV = "SONIC_TRITON_ADMIN_KEY"


def triton_admin_env() -> dict[str, object]:
    """The container environment entry that carries the management key (Triton and Envoy alike)."""
    return {
        "name": TRITON_ADMIN_ENV,
        "valueFrom": {"secretKeyRef": {"name": TRITON_ADMIN_SECRET, "key": TRITON_ADMIN_SECRET_KEY}},
    }


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


# --- object names (every object a deployment renders is named here) --------------------------------
# Names stay under 63 characters: deployment names are at most 40 (common.schema.json#/$defs/name).

SNAPSHOT_MOUNT = "/models/built"  # the snapshot claim's <experiment>/<deployment> directory, read-only
CVMFS_MOUNT = "/cvmfs"  # same path as on the nodes, so declared /cvmfs/... repositories stay valid
NFS_MOUNT = "/models/nfs"
DRAIN_FILE = "/tmp/drain"  # preStop creates it; the readiness probe fails while it exists
ENVOY_CONFIG_DIR = "/etc/envoy"
ENVOY_CONFIG_FILE = "envoy.yaml"

CONFIG_CHECKSUM_ANNOTATION = "sonic.fastml.org/config-sha256"
ROLE_LABEL = "sonic.fastml.org/role"  # tells the Envoy client Service from its stats Service
# On Ingresses of sites whose controller never fills status.loadBalancer; the Argo CD health
# override pipelines/render/lua/ingress_health.lua reports them Healthy (docs/gitops.md).
INGRESS_STATUS_ANNOTATION = "sonic.fastml.org/ingress-status"
INGRESS_STATUS_UNPUBLISHED = "unpublished"


def envoy_stats_name(p: SiteDeployment) -> str:
    """Service that exposes only Envoy's stats listener, for Prometheus."""
    return f"{p.name}-envoy-stats"


def envoy_service_host(p: SiteDeployment) -> str:
    """In-cluster DNS name of the client-facing Envoy Service (gRPC only)."""
    return f"{envoy_name(p)}.{p.namespace}.svc"


def cvmfs_claim_name(p: SiteDeployment) -> str:
    """The per-deployment read-only CVMFS PersistentVolumeClaim (sites with a CVMFS StorageClass)."""
    return f"{p.name}-cvmfs"


def nfs_export_path(p: SiteDeployment, export: str) -> str:
    """The only directory of the site's NFS export a deployment mounts: its experiment's own.

    The volume itself points there (not the whole export plus a subPath), so the node mounts
    ``<export>/<experiment>`` and the pod can never reach another experiment's models.
    """
    return f"{export.rstrip('/')}/{p.experiment}"


def snapshot_subpath(p: SiteDeployment) -> str:
    """Directory of this deployment's built snapshots inside the site's snapshot claim."""
    return f"{p.experiment}/{p.name}"


def monitoring_name(p: SiteDeployment) -> str:
    """PrometheusRule / plain-Prometheus ConfigMap of the deployment."""
    return f"{p.name}-monitoring"


def dashboard_name(p: SiteDeployment) -> str:
    return f"{p.name}-dashboard"


def scaler_name(p: SiteDeployment) -> str:
    """ScaledObject (and the HPA KEDA creates for it)."""
    return f"{p.name}-triton"


def trigger_auth_name(p: SiteDeployment) -> str:
    return f"{p.name}-prometheus"


def check_name(p: SiteDeployment) -> str:
    """PostSync hook Job (and its ServiceAccount) running ``sonic check``."""
    return f"{p.name}-check"


def deployment_ref(p: SiteDeployment) -> str:
    """``<experiment>/<deployment>``: how the CLI names a deployment."""
    return f"{p.experiment}/{p.name}"


def application_name(p: SiteDeployment) -> str:
    """Argo CD Application of one deployment at one site (unique even in a central Argo CD)."""
    return model.application_name(p.site, p.experiment, p.name)


def rendered_dir(p: SiteDeployment) -> str:
    """Repository-relative directory of the deployment's rendered manifests at its site."""
    return f"{RENDERED_DIR}/{p.site}/{p.experiment}/{p.name}"


# --- namespaces ------------------------------------------------------------------------------------

# Pod Security Standard every namespace the tree deploys into is labelled to enforce
# (pod-security.kubernetes.io/enforce); rendered pods are written to pass it, and the
# control-plane tests apply the tree into namespaces that enforce it.
POD_SECURITY_LEVEL = "restricted"
