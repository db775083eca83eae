"""What a deployment's pods take from its namespace's quota at their most, per resource.

The namespace quota rules (:mod:`pipelines.config.semantic`) and the rendered ResourceQuota
(:mod:`pipelines.render.quota`) both count with this module, and the renderers take the fixed
pods' resources from here too, so the validation cannot count differently from what is rendered
(a unit test sums the rendered pods and compares). At its most, one deployment runs:

- ``max`` Triton replicas (``autoscaling.max``, else ``replicas``), plus the one extra pod a
  rolling update of a CPU-only Triton adds (:func:`triton_surge`; GPU pods never surge);
- its Envoy replicas plus one rolling-update surge pod;
- its PostSync check Job's pod;
- one model-build workflow pod when it builds models (artifacts, at a site with a snapshots
  claim): the build step plus Argo's ``init`` and ``wait`` executor containers, all counted
  (conservative: the executor's init container runs before the others start);
- one pod for each part of the in-namespace monitoring stack it enables (``monitoring``:
  Prometheus, Grafana, and for tracing an OpenTelemetry collector and Tempo); they are
  ``Recreate`` Deployments of one replica, so they never surge.

CPU and memory are counted as requests and as limits; the quota bounds both with one number.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pipelines.config.model import Placement, Resources, Site
from pipelines.config.quantity import parse_quantity

# The PostSync check Job's container (pipelines.render.argocd.render_check_job).
CHECK_JOB = Resources(cpu="250m", memory="512Mi", cpu_limit="1", memory_limit="1Gi")
# The model build step (pipelines.workflows.steps.LARGE): hashing and copying large artifacts.
MODEL_BUILD = Resources(cpu="1", memory="2Gi", cpu_limit="2", memory_limit="8Gi")
# Argo's executor containers (init and wait) in every workflow pod: set in the controller's
# ConfigMap (pipelines.workflows.controller.EXECUTOR) and, for any container that has none, the
# namespace LimitRange's defaults.
WORKFLOW_EXECUTOR = Resources(cpu="100m", memory="64Mi", cpu_limit="500m", memory_limit="256Mi")
EXECUTOR_CONTAINERS = 2  # init, wait
ENVOY_SURGE = 1  # the Envoy Deployment's rollingUpdate.maxSurge
# The in-namespace monitoring stack's containers (pipelines.render.monitoring_stack).
STACK_PROMETHEUS = Resources(cpu="500m", memory="512Mi", cpu_limit="1", memory_limit="1Gi")
STACK_GRAFANA = Resources(cpu="100m", memory="128Mi", cpu_limit="1", memory_limit="512Mi")
STACK_OTEL_COLLECTOR = Resources(cpu="100m", memory="128Mi", cpu_limit="500m", memory_limit="512Mi")
STACK_TEMPO = Resources(cpu="100m", memory="256Mi", cpu_limit="1", memory_limit="1Gi")


def triton_surge(p: Placement) -> int:
    """Triton's rollingUpdate.maxSurge: GPU pods never surge (a rollout must not need more GPUs).

    A pod placed on a GPU class's nodes without a GPU (``gpu.count: 0``) requests none, so it
    surges like any CPU pod.
    """
    return 0 if p.gpus_per_pod > 0 else 1


@dataclass(frozen=True)
class Footprint:
    """Pods, and CPU (cores) and memory (bytes) as requests and as limits."""

    pods: int = 0
    requests_cpu: Decimal = Decimal(0)
    limits_cpu: Decimal = Decimal(0)
    requests_memory: Decimal = Decimal(0)
    limits_memory: Decimal = Decimal(0)

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(
            self.pods + other.pods,
            self.requests_cpu + other.requests_cpu,
            self.limits_cpu + other.limits_cpu,
            self.requests_memory + other.requests_memory,
            self.limits_memory + other.limits_memory,
        )

    def times(self, n: int) -> Footprint:
        return Footprint(
            self.pods * n,
            self.requests_cpu * n,
            self.limits_cpu * n,
            self.requests_memory * n,
            self.limits_memory * n,
        )


def _q(text: str | None) -> Decimal:
    return parse_quantity(text) if text else Decimal(0)


def container(r: Resources) -> Footprint:
    """One container (no pod): limits default to the requests, as the renderers write them."""
    return Footprint(
        0,
        _q(r.cpu),
        _q(r.cpu_limit or r.cpu),
        _q(r.memory),
        _q(r.memory_limit or r.memory),
    )


def pod(*containers: Resources) -> Footprint:
    total = Footprint(pods=1)
    for r in containers:
        total = total + container(r)
    return total


def builds_models(p: Placement, site: Site) -> bool:
    """Whether the model-build workflow runs in the deployment's namespace for it."""
    return site.storage.snapshots is not None and any(m.artifact is not None for m in p.models)


def deployment_parts(p: Placement, site: Site) -> dict[str, Footprint]:
    """The deployment's most, by part (for messages): triton, envoy, check, build, monitoring."""
    parts = {
        "triton": pod(p.triton.resources).times(p.max_replicas + triton_surge(p)),
        "envoy": pod(p.envoy.resources).times(p.envoy.replicas + ENVOY_SURGE),
        "check": pod(CHECK_JOB),
    }
    if builds_models(p, site):
        parts["build"] = pod(MODEL_BUILD, *([WORKFLOW_EXECUTOR] * EXECUTOR_CONTAINERS))
    m = p.monitoring
    if m.prometheus.enabled:
        parts["prometheus"] = pod(STACK_PROMETHEUS)
    if m.grafana.enabled:
        parts["grafana"] = pod(STACK_GRAFANA)
    if m.tracing.enabled:
        parts["tracing"] = pod(STACK_OTEL_COLLECTOR) + pod(STACK_TEMPO)
    return parts


def deployment_footprint(p: Placement, site: Site) -> Footprint:
    total = Footprint()
    for part in deployment_parts(p, site).values():
        total = total + part
    return total
