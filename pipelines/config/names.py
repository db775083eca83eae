"""Names, labels and ports shared by every renderer (and by the local stack and the checks).

One place decides what things are called, so that the Envoy cluster address, the Prometheus
selectors, the NetworkPolicy and the Services can never drift apart.
"""

from __future__ import annotations

from pipelines.config import layout, model
from pipelines.config.layout import ARGOCD_DIR, CODEOWNERS_FILE, NAMESPACES_DIR, RENDERED_DIR
from pipelines.config.model import Placement, PrometheusAuth, Site
from pipelines.config.repository import (
    CHECK_CLIENT_SECRET,
    GITHUB_READ_TOKEN_SECRET,
    GITOPS_BRANCH,
    PIPELINE_IMAGE,
    PIPELINE_UID,
)
from pipelines.config.reserved import PIPELINES_NAMESPACE

__all__ = [
    "ARGOCD_DIR",
    "CHECK_CLIENT_SECRET",
    "CODEOWNERS_FILE",
    "GITHUB_READ_TOKEN_SECRET",
    "GITOPS_BRANCH",
    "NAMESPACES_DIR",
    "PIPELINES_NAMESPACE",
    "PIPELINE_IMAGE",
    "PIPELINE_UID",
    "RENDERED_DIR",
]

# --- labels (every object sonic writes carries PART_OF_LABEL; see managed_labels) -------------------
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
EXPERIMENT_LABEL = "sonic.fastml.org/experiment"
SITE_LABEL = "sonic.fastml.org/site"
DEPLOYMENT_LABEL = "sonic.fastml.org/deployment"
PART_OF = "sonic"
MANAGED_BY = "sonic-gitops"

# The pipelines' defaults (gitops/repository.yaml may set each): decided in config/repository.py.

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


def triton_name(p: Placement) -> str:
    return f"{p.name}-triton"


def envoy_name(p: Placement) -> str:
    return f"{p.name}-envoy"


def triton_service_host(p: Placement) -> str:
    """DNS name of the headless Triton Service: resolves to every ready pod IP."""
    return f"{triton_name(p)}.{p.namespace}.svc.cluster.local"


def managed_labels(*, experiment: str | None = None, site: str | None = None) -> dict[str, str]:
    """Labels on every object ``sonic render`` writes, with its experiment and site when it has them."""
    out = {PART_OF_LABEL: PART_OF, MANAGED_BY_LABEL: MANAGED_BY}
    if experiment is not None:
        out[EXPERIMENT_LABEL] = experiment
    if site is not None:
        out[SITE_LABEL] = site
    return out


def labels(p: Placement, component: str) -> dict[str, str]:
    """Labels on every object of one component; a superset of :func:`selector`."""
    return {**selector(p, component), **managed_labels(experiment=p.experiment, site=p.site)}


def selector(p: Placement, component: str) -> dict[str, str]:
    """The stable subset of labels used in selectors (immutable on Deployments)."""
    return {NAME_LABEL: component, INSTANCE_LABEL: p.name}


# --- object names (every object a deployment renders is named here) --------------------------------
# Names stay under 63 characters: deployment names are at most 40 (common.schema.json#/$defs/name).

SNAPSHOT_MOUNT = "/models/built"  # the snapshot claim's <experiment>/<deployment> directory, read-only
CVMFS_MOUNT = "/cvmfs"  # same path as on the nodes, so declared /cvmfs/... repositories stay valid
NFS_MOUNT = "/models/nfs"
DRAIN_FILE = "/tmp/drain"  # preStop creates it; the readiness probe fails while it exists
TRITON_TRACE_FILE = "/tmp/trace.json"  # where --trace-config mode=triton writes (the /tmp emptyDir)
ENVOY_CONFIG_DIR = "/etc/envoy"
ENVOY_CONFIG_FILE = "envoy.yaml"

CONFIG_CHECKSUM_ANNOTATION = "sonic.fastml.org/config-sha256"
ROLE_LABEL = "sonic.fastml.org/role"  # tells the Envoy client Service from its stats Service
# On Ingresses of sites whose controller never fills status.loadBalancer; the Argo CD health
# override pipelines/render/lua/ingress_health.lua reports them Healthy (docs/gitops.md).
INGRESS_STATUS_ANNOTATION = "sonic.fastml.org/ingress-status"
INGRESS_STATUS_UNPUBLISHED = "unpublished"


def envoy_stats_name(p: Placement) -> str:
    """Service that exposes only Envoy's stats listener, for Prometheus."""
    return f"{p.name}-envoy-stats"


def envoy_service_host(p: Placement) -> str:
    """In-cluster DNS name of the client-facing Envoy Service (gRPC only)."""
    return f"{envoy_name(p)}.{p.namespace}.svc"


def cvmfs_claim_name(p: Placement) -> str:
    """The per-deployment read-only CVMFS PersistentVolumeClaim (sites with a CVMFS StorageClass)."""
    return f"{p.name}-cvmfs"


def nfs_export_path(p: Placement, export: str) -> str:
    """The only directory of the site's NFS export a deployment mounts: its experiment's own.

    The volume itself points there (not the whole export plus a subPath), so the node mounts
    ``<export>/<experiment>`` and the pod can never reach another experiment's models.
    """
    return f"{export.rstrip('/')}/{p.experiment}"


def snapshot_subpath(p: Placement) -> str:
    """Directory of this deployment's built snapshots inside the site's snapshot claim."""
    return snapshot_dir(p.experiment, p.name)


def snapshot_dir(experiment: str, deployment: str) -> str:
    """:func:`snapshot_subpath` from the two names (the build workflow has them as parameters)."""
    return f"{experiment}/{deployment}"


def monitoring_name(p: Placement) -> str:
    """PrometheusRule / plain-Prometheus ConfigMap of the deployment."""
    return f"{p.name}-monitoring"


def dashboard_name(p: Placement) -> str:
    return f"{p.name}-dashboard"


def scaler_name(p: Placement) -> str:
    """ScaledObject (and the HPA KEDA creates for it)."""
    return f"{p.name}-triton"


def trigger_auth_name(p: Placement) -> str:
    return f"{p.name}-prometheus"


def check_name(p: Placement) -> str:
    """PostSync hook Job (and its ServiceAccount) running ``sonic check``."""
    return f"{p.name}-check"


def deployment_ref(p: Placement) -> str:
    """``<experiment>/<deployment>``: how the CLI names a deployment (:attr:`Placement.ref`)."""
    return p.ref


def application_name(p: Placement) -> str:
    """Argo CD Application of one deployment at one site (unique even in a central Argo CD)."""
    return model.application_name(p.site, p.experiment, p.name)


def rendered_dir(p: Placement) -> str:
    """Repository-relative directory of the deployment's rendered manifests at its site."""
    return layout.rendered_dir(p.site, p.experiment, p.name)


# --- namespaces ------------------------------------------------------------------------------------

# Pod Security Standard every namespace the tree deploys into is labelled to enforce
# (pod-security.kubernetes.io/enforce); rendered pods are written to pass it, and the
# control-plane tests apply the tree into namespaces that enforce it.
POD_SECURITY_LEVEL = "restricted"


# --- the optional in-namespace monitoring stack (render/monitoring_stack.py) -------------------------

# Official images, pinned; the one place to bump them.
PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
GRAFANA_IMAGE = "grafana/grafana:11.3.0"
OTEL_COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.115.0"
TEMPO_IMAGE = "grafana/tempo:2.6.1"

PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
OTLP_GRPC = 4317  # the collector's and Tempo's OTLP/gRPC receivers
OTLP_HTTP = 4318  # the collector's OTLP/HTTP receiver (Triton's OpenTelemetry exporter speaks it)
OTEL_HEALTH = 13133  # the collector's health_check extension
TEMPO_HTTP = 3200  # Tempo's query API (Grafana's datasource)

# Grafana's admin login: a Secret the site admins create in the namespace; only referenced.
GRAFANA_ADMIN_SECRET = "sonic-grafana-admin"
GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"


def prometheus_name(p: Placement) -> str:
    """The in-namespace Prometheus: Deployment, Service, ConfigMap, ServiceAccount, Role, RoleBinding."""
    return f"{p.name}-prometheus"


def grafana_name(p: Placement) -> str:
    return f"{p.name}-grafana"


def otel_collector_name(p: Placement) -> str:
    return f"{p.name}-otel-collector"


def tempo_name(p: Placement) -> str:
    return f"{p.name}-tempo"


def otel_collector_grpc(p: Placement) -> str:
    """``host:port`` of the in-namespace collector's OTLP/gRPC receiver (Envoy's tracing)."""
    return f"{otel_collector_name(p)}.{p.namespace}.svc.cluster.local:{OTLP_GRPC}"


def otel_collector_http(p: Placement) -> str:
    """URL of the in-namespace collector's OTLP/HTTP traces endpoint (Triton's tracing)."""
    return f"http://{otel_collector_name(p)}.{p.namespace}.svc.cluster.local:{OTLP_HTTP}/v1/traces"


def prometheus_url(p: Placement, site: Site) -> str | None:
    """The Prometheus that answers ``p``'s queries (KEDA, the admission gate, the checks).

    The deployment's own, in its namespace, when it runs one; else the site's; None if neither.
    """
    if p.monitoring.prometheus.enabled:
        return f"http://{prometheus_name(p)}.{p.namespace}.svc.cluster.local:{PROMETHEUS_PORT}"
    return site.prometheus.url if site.prometheus is not None else None


def prometheus_auth(p: Placement, site: Site) -> PrometheusAuth | None:
    """The bearer token :func:`prometheus_url` needs: the site's, never for the in-namespace one."""
    if p.monitoring.prometheus.enabled or site.prometheus is None:
        return None
    return site.prometheus.auth


# --- namespace quota (issue 11, finding 8) ----------------------------------------------------------
# Per granted namespace, applied by the site's administrators (not by an experiment's Argo CD
# Application: the AppProjects allow neither kind). "_" cannot start an experiment name, so the
# directory never collides with gitops/rendered/<site>/<experiment>/.
QUOTA_NAME = "sonic-quota"  # the ResourceQuota
LIMIT_RANGE_NAME = "sonic-defaults"  # the LimitRange giving containers without resources defaults


def namespace_dir(site: str, namespace: str) -> str:
    """Repository-relative directory of one granted namespace's ResourceQuota and LimitRange."""
    return layout.namespace_dir(site, namespace)


def check_client_secret(p: Placement) -> str:
    """The deployment's own OAuth2 check-client Secret (JWT deployments), in its namespace.

    One per deployment, not one per site: every pod of a namespace can read its Secrets, so a
    shared client would let one experiment mint tokens for another's deployment (issue 11,
    finding 14). The identity provider's client behind it may ask only for this deployment's
    audience.
    """
    return f"{p.name}-check-client"


# Where the rollout's wait step finds the kubeconfig Secrets of sites whose Argo CD runs in
# another cluster: <dir>/<secret name>/<key>. The rollout WorkflowTemplate mounts them there
# (pipelines.workflows.rollout) and the step reads them (pipelines.ops.rollout_target): one
# constant below both, which never import each other.
ARGOCD_KUBECONFIG_DIR = "/var/run/secrets/sonic/argocd-kubeconfig"
