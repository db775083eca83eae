"""Typed, immutable configuration objects, built once from schema-valid data with defaults applied.

Field names are the schema's camelCase keys in snake_case; durations become seconds (float).
Nothing here re-checks what the schema already guarantees; the cross-file rules live in
``semantic.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float) -> float:
    """``"1m30s"`` -> 90.0 seconds; numbers pass through (already seconds)."""
    if isinstance(text, int | float):
        return float(text)
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


Seconds = Annotated[float, BeforeValidator(parse_duration)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


# --- shared ----------------------------------------------------------------------------------------


class SecretKeyRef(Frozen):
    name: str
    key: str


class Toleration(Frozen):
    key: str
    operator: Literal["Equal", "Exists"]
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


# Kubernetes placement (common.schema.json#/$defs/affinity): the subset of core/v1 Affinity that
# places pods, field for field; rendered with model_dump(by_alias=True, exclude_defaults=True).


class SelectorRequirement(Frozen):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: tuple[str, ...] = ()


class NodeSelectorTerm(Frozen):
    match_expressions: tuple[SelectorRequirement, ...] = ()
    match_fields: tuple[SelectorRequirement, ...] = ()


class RequiredNodeTerms(Frozen):
    node_selector_terms: tuple[NodeSelectorTerm, ...]


class PreferredNodeTerm(Frozen):
    weight: int
    preference: NodeSelectorTerm


class NodeAffinity(Frozen):
    required_during_scheduling_ignored_during_execution: RequiredNodeTerms | None = None
    preferred_during_scheduling_ignored_during_execution: tuple[PreferredNodeTerm, ...] = ()


class LabelRequirement(Frozen):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(Frozen):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelRequirement, ...] = ()


class PodAffinityTerm(Frozen):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: tuple[str, ...] = ()
    topology_key: str


class WeightedPodAffinityTerm(Frozen):
    weight: int
    pod_affinity_term: PodAffinityTerm


class PodAffinity(Frozen):
    required_during_scheduling_ignored_during_execution: tuple[PodAffinityTerm, ...] = ()
    preferred_during_scheduling_ignored_during_execution: tuple[WeightedPodAffinityTerm, ...] = ()


class Affinity(Frozen):
    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class Resources(Frozen):
    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


# --- experiment ------------------------------------------------------------------------------------


class ExperimentSite(Frozen):
    namespaces: tuple[str, ...]


class Experiment(Frozen):
    name: str
    description: str = ""
    owners: tuple[str, ...]
    contact: str
    sites: dict[str, ExperimentSite]
    source: Path = Field(exclude=True)


# --- site ------------------------------------------------------------------------------------------


class ArgoCD(Frozen):
    server: str
    namespace: str


class KubernetesVersions(Frozen):
    min_version: str
    max_version: str


class GpuClass(Frozen):
    resource: str
    node_selector: dict[str, str]
    products: tuple[str, ...]
    tolerations: tuple[Toleration, ...]


class Cvmfs(Frozen):
    storage_class: str | None = None
    host_path: str | None = None


class Nfs(Frozen):
    server: str
    path: str


class SnapshotStore(Frozen):
    claim: str


class S3(Frozen):
    endpoint: str
    bucket: str
    credentials: str


class Storage(Frozen):
    cvmfs: Cvmfs | None = None
    nfs: Nfs | None = None
    pvcs: tuple[str, ...]
    max_artifact_size: int = 32 * 1024**3  # bytes (schema default); every artifact declared here must fit
    snapshots: SnapshotStore | None = None
    s3: S3 | None = None


class Ingress(Frozen):
    class_name: str
    domain: str
    namespace: str  # where the controller runs
    publishes_status: bool  # writes status.loadBalancer.ingress (Argo CD's Ingress health needs it)
    annotations: dict[str, str]
    tls_secret: str | None = None
    default_certificate: bool  # TLS for every host under domain without a Secret of ours
    allowed_annotations: tuple[str, ...] = ()  # key globs deployments may set (envoy.ingress.annotations)


class PrometheusAuth(Frozen):
    secret_ref: SecretKeyRef


class Prometheus(Frozen):
    url: str
    namespace: str  # where the scraping Prometheus runs (NetworkPolicies admit it)
    auth: PrometheusAuth | None = None
    operator: bool
    rule_labels: dict[str, str]


class SiteRollout(Frozen):
    """Where the rollout workflow finds the site's Argo CD and reaches its deployments."""

    argocd_kubeconfig: SecretKeyRef | None = None  # None: Argo CD in the cluster running the rollout
    verify_through: Literal["service", "ingress"] = "service"


class Keda(Frozen):
    namespace: str = "keda"  # where the operator runs (queries an in-namespace Prometheus from there)


class NamespaceQuota(Frozen):
    """Per granted namespace (site.schema.json ``experiments.<name>.quota``); defaults as the schema's."""

    cpu: str = "64"
    memory: str = "256Gi"
    pods: int = 100


class SiteGrant(Frozen):
    namespaces: tuple[str, ...]
    gpu_quota: int
    quota: NamespaceQuota = Field(default_factory=NamespaceQuota)


class SiteImages(Frozen):
    """Image repositories (or ``prefix/*``) a deployment's containers may come from at a site."""

    triton: tuple[str, ...] = ("nvcr.io/nvidia/tritonserver",)
    envoy: tuple[str, ...] = ("docker.io/envoyproxy/envoy",)


class Site(Frozen):
    name: str
    description: str = ""
    admins: tuple[str, ...] = ()  # GitHub handles; none: the platform team owns the site file
    images: SiteImages = Field(default_factory=SiteImages)
    argocd: ArgoCD
    kubernetes: KubernetesVersions
    gpu_classes: dict[str, GpuClass]
    storage: Storage
    ingress: Ingress | None = None
    prometheus: Prometheus | None = None
    pushgateway: str | None = None
    rollout: SiteRollout = Field(default_factory=SiteRollout)
    keda: Keda = Field(default_factory=Keda)
    require_image_digests: bool = False  # every image that runs here pinned by @sha256: digest
    experiments: dict[str, SiteGrant]
    source: Path = Field(exclude=True)


# --- deployment ------------------------------------------------------------------------------------


class Gpu(Frozen):
    gpu_class: str = Field(alias="class")
    count: int


class Tracing(Frozen):
    mode: Literal["triton", "opentelemetry"]
    level: Literal["OFF", "TIMESTAMPS", "TENSORS"]
    rate: int
    endpoint: str | None = None


FlagScalar = bool | int | float | str
FlagList = tuple[FlagScalar, ...]
# A flag's value: a scalar, a list (repeated option), or a mapping of settings (metrics-config,
# trace-config, trace with its nested opentelemetry mapping).
FlagValue = FlagScalar | FlagList | dict[str, FlagScalar | FlagList | dict[str, FlagScalar | FlagList]]


class TritonServer(Frozen):
    log_verbose: int
    log_info: bool
    strict_model_config: bool
    exit_on_error: bool
    exit_timeout: Seconds
    model_control_mode: Literal["none", "explicit", "poll"]
    poll_interval: Seconds
    backend_config: dict[str, dict[str, str]]
    tracing: Tracing | None = None
    # Known tritonserver options (schema: tritonFlags), by name without "--"; values as written.
    flags: dict[str, FlagValue] = Field(default_factory=dict)


class Probe(Frozen):
    period: Seconds
    timeout: Seconds
    failure_threshold: int


class ReadinessProbe(Probe):
    mode: Literal["default", "kubernetesDefaults", "off"] = "default"


class ReadinessModel(Frozen):
    name: str
    version: int | None = None


class Probes(Frozen):
    startup_timeout: Seconds
    readiness_model: ReadinessModel | None = None
    readiness: ReadinessProbe
    liveness: Probe


class Drain(Frozen):
    delay: Seconds
    grace_period: Seconds


class ExtraMount(Frozen):
    cvmfs: str
    mount_path: str


class Triton(Frozen):
    image: str
    gpu: Gpu | None = None
    resources: Resources
    node_selector: dict[str, str]
    server: TritonServer
    tolerations: tuple[Toleration, ...] = ()
    affinity: Affinity | None = None
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    extra_mounts: tuple[ExtraMount, ...] = ()
    run_as_user: int
    probes: Probes
    drain: Drain


class PvcDir(Frozen):
    claim: str
    path: str


class ModelRepository(Frozen):
    cvmfs: tuple[str, ...]
    pvc: tuple[PvcDir, ...]
    nfs: tuple[str, ...]
    baked: tuple[str, ...]


DType = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "STRING",
]


class Tensor(Frozen):
    name: str
    dtype: DType
    dims: tuple[int, ...]
    optional: bool


class Artifact(Frozen):
    source: str
    sha256: str
    size: int | None = None
    filename: str | None = None


class DynamicBatching(Frozen):
    preferred_batch_size: tuple[int, ...]
    max_queue_delay: Seconds


class Instances(Frozen):
    kind: Literal["GPU", "CPU", "AUTO"]
    count: int


Platform = Literal["onnxruntime_onnx", "pytorch_libtorch", "tensorrt_plan", "tensorflow_savedmodel", "python"]


class Model(Frozen):
    name: str
    artifact: Artifact | None = None
    config_file: str | None = None
    platform: Platform
    versions: tuple[int, ...]
    max_batch_size: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    dynamic_batching: DynamicBatching | None = None
    instances: Instances


class TokenBucket(Frozen):
    max_tokens: int
    tokens_per_fill: int
    fill_interval: Seconds


class Timeouts(Frozen):
    connect: Seconds
    route: Seconds
    idle: Seconds


class EnvoyIngress(Frozen):
    host: str
    tls_secret: str | None = None
    class_name: str | None = None  # None: the site's ingress.className
    annotations: dict[str, str] = Field(default_factory=dict)  # merged over the site's
    tls: Literal["default"] | None = None  # the controller's default certificate


class EnvoyService(Frozen):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    alias: str | None = None  # a second ClusterIP Service name


class HealthCheck(Frozen):
    interval: Seconds
    timeout: Seconds
    unhealthy_threshold: int
    healthy_threshold: int


class OutlierDetection(Frozen):
    consecutive_errors: int
    interval: Seconds
    base_ejection_time: Seconds
    max_ejection_percent: int


RetryOn = Literal[
    "unavailable",
    "reset",
    "connect-failure",
    "resource-exhausted",
    "refused-stream",
    "cancelled",
    "deadline-exceeded",
]


class Retries(Frozen):
    on: tuple[RetryOn, ...]
    attempts: int
    per_try_timeout: Seconds
    budget_percent: float
    min_retry_concurrency: int


class CircuitBreakers(Frozen):
    max_connections: int
    max_pending_requests: int
    max_requests: int


class RateLimit(Frozen):
    connections: TokenBucket | None = None
    requests: TokenBucket | None = None


class AdmissionGate(Frozen):
    enabled: bool
    threshold: float
    cache_for: Seconds
    query_timeout: Seconds
    on_prometheus_error: Literal["open", "closed"]
    metric: Literal["queueLatency", "query"] | None = None  # None: the autoscaling metric
    query: str | None = None


class Jwt(Frozen):
    provider: str
    issuer: str
    jwks_uri: str
    audiences: tuple[str, ...]
    jwks_cache_for: Seconds
    clock_skew: Seconds


class Auth(Frozen):
    jwt: Jwt | None = None


class EnvoyTracing(Frozen):
    sampling_rate: float
    collector: str | None = None  # None: the in-namespace collector (monitoring.tracing.enabled)


class Envoy(Frozen):
    image: str
    replicas: int
    resources: Resources
    workers: int | None = None  # None: derived from the CPU limit (render.envoy.k8s.envoy_workers)
    lb_policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RING_HASH", "RANDOM", "MAGLEV"]
    timeouts: Timeouts
    ingress: EnvoyIngress | None = None
    health_check: HealthCheck
    outlier_detection: OutlierDetection
    retries: Retries
    circuit_breakers: CircuitBreakers
    max_connections: int
    rate_limit: RateLimit
    admission_gate: AdmissionGate | None = None
    auth: Auth | None = None
    tracing: EnvoyTracing | None = None
    access_log: bool
    service: EnvoyService = Field(default_factory=EnvoyService)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    affinity: Affinity | None = None
    pod_annotations: dict[str, str] = Field(default_factory=dict)


class ScalingBehavior(Frozen):
    stabilization: Seconds | None = None
    period: Seconds
    step: int


class Autoscaling(Frozen):
    min: int
    max: int
    metric: Literal["queueLatency", "pendingRequests", "query"]
    query: str | None = None
    activation_query: str | None = None
    threshold: float
    activation_threshold: float
    polling_interval: Seconds
    cooldown_period: Seconds
    scale_up: ScalingBehavior
    scale_down: ScalingBehavior
    fallback_replicas: int | None = None


class Alerts(Frozen):
    enabled: bool
    queue_latency_ms: float
    error_ratio: float
    for_: Seconds = Field(alias="for")


class Enabled(Frozen):
    enabled: bool = False


class GrafanaStack(Frozen):
    enabled: bool = False
    host: str | None = None


class Monitoring(Frozen):
    scrape_interval: Seconds
    dashboard: bool
    alerts: Alerts
    # The optional in-namespace stack (render/monitoring_stack.py), for sites without monitoring.
    prometheus: Enabled = Field(default_factory=Enabled)
    grafana: GrafanaStack = Field(default_factory=GrafanaStack)
    tracing: Enabled = Field(default_factory=Enabled)


class Reference(Frozen):
    inputs: str
    outputs: str
    atol: float
    rtol: float


class ModelCheck(Frozen):
    name: str
    batch_size: int
    shapes: dict[str, tuple[int, ...]] | None = None
    reference: Reference | None = None


class LatencySLO(Frozen):
    p50: Seconds | None = None
    p99: Seconds
    concurrency: int
    requests: int
    max_error_ratio: float


class Checks(Frozen):
    models: tuple[ModelCheck, ...]
    latency_slo: LatencySLO = Field(alias="latencySLO")
    schedule: str
    timeout: Seconds


class Placement(Frozen):
    """A deployment as it runs at one site (a *placement*): per-site overrides merged, defaults applied.

    This is what renderers, the model builder and the checks work on; ``Deployment.placements``
    holds one per site, ``Tree.placements_at(site)`` every one at a site. Variables holding one
    are called ``p`` or ``placement``.
    """

    name: str
    experiment: str
    description: str = ""
    site: str
    namespace: str
    replicas: int
    triton: Triton
    model_repository: ModelRepository
    models: tuple[Model, ...]
    envoy: Envoy
    autoscaling: Autoscaling | None = None
    monitoring: Monitoring
    checks: Checks
    source: Path = Field(exclude=True)

    @property
    def ref(self) -> str:
        """``<experiment>/<deployment>``: how the CLI, reports and errors name the deployment."""
        return deployment_ref(self.experiment, self.name)

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max if self.autoscaling else self.replicas

    @property
    def gpus_per_pod(self) -> int:
        return self.triton.gpu.count if self.triton.gpu else 0

    def model(self, name: str) -> Model | None:
        return next((m for m in self.models if m.name == name), None)


def deployment_ref(experiment: str, deployment: str) -> str:
    """``<experiment>/<deployment>``: the one spelling of a deployment reference (``sonic check cms/x``)."""
    return f"{experiment}/{deployment}"


def application_name(site: str, experiment: str, deployment: str) -> str:
    """The Argo CD Application of one deployment at one site (``pipelines.config.names`` uses it).

    Unique only as long as no two (site, experiment, deployment) join to the same text: the
    rule ``application_names_unique`` refuses ``cms/mini-mal`` beside ``cms-mini/mal``.
    """
    return f"{site}-{experiment}-{deployment}"


class Deployment(Frozen):
    """One deployment file: the same service at each of its sites (ordered by site name)."""

    name: str
    experiment: str
    source: Path = Field(exclude=True)
    placements: tuple[Placement, ...]

    @property
    def ref(self) -> str:
        """``<experiment>/<deployment>``, as :attr:`Placement.ref`."""
        return deployment_ref(self.experiment, self.name)

    def at(self, site: str) -> Placement | None:
        return next((p for p in self.placements if p.site == site), None)
