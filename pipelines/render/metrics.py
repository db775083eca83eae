"""The PromQL this project relies on: the load metric (shared by KEDA, the admission gate unless it
has its own metric, the recording rule, the dashboard and the checks) and the Envoy-side
activation metric.

Prometheus target labels ``namespace`` and ``service`` are set by the ServiceMonitors (and by
the local scrape configuration), so the same query works at every site and on a laptop.

Every ``rate()`` window spans at least :data:`RATE_SCRAPES` scrape intervals of the
deployment (:func:`rate_window`): ``rate()`` needs two samples inside its window, so a window
of two intervals (SuperSONIC's ``[30s]`` over a 15 s scrape) is empty whenever one scrape is
missed or late, and the autoscaler, the gate and the alerts all see "no data".
"""

from __future__ import annotations

from pipelines.config.model import Placement
from pipelines.config.names import ENVOY_HTTP_PREFIX, envoy_name, triton_name
from pipelines.render.durations import go_duration

# Four scrapes per window leave at least two samples after one missed scrape (Prometheus'
# own guidance for rate(): a range of at least four times the scrape interval).
RATE_SCRAPES = 4
ERROR_RATIO_WINDOW = 300.0  # seconds: errors are judged over 5 minutes (or more, see rate_window)
ENVOY_RATE_WINDOW = 120.0  # seconds: client arrivals that wake a scaled-to-zero deployment


def rate_window(p: Placement, at_least: float = 0.0) -> str:
    """The range of every ``rate()`` of ``p``: four scrape intervals, or ``at_least`` seconds if longer."""
    return go_duration(max(RATE_SCRAPES * p.monitoring.scrape_interval, at_least))


def triton_selector(p: Placement) -> str:
    return f'namespace="{p.namespace}",service="{triton_name(p)}"'


def envoy_selector(p: Placement) -> str:
    return f'namespace="{p.namespace}",service="{envoy_name(p)}"'


def queue_latency_query(p: Placement) -> str:
    """SuperSONIC's load metric: milliseconds of queueing per batch execution, over all replicas."""
    sel = triton_selector(p)
    window = rate_window(p)
    return (
        f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[{window}]))"
        f" / (sum(rate(nv_inference_exec_count{{{sel}}}[{window}])) * 1000 + 0.001)"
    )


def pending_requests_query(p: Placement) -> str:
    """Requests waiting in Triton, averaged per replica."""
    sel = triton_selector(p)
    return f"avg(nv_inference_pending_request_count{{{sel}}})"


def load_query(p: Placement) -> str:
    """The deployment's load metric: what autoscaling targets and the admission gate compares.

    It has no data while no Triton runs (Triton's metrics vanish with its last replica) and for
    a scrape or two after one starts. The checks and the gate want to see that; KEDA's trigger
    wraps it in :func:`zero_when_absent`.
    """
    a = p.autoscaling
    if a is not None and a.metric == "query" and a.query:
        return a.query
    if a is not None and a.metric == "pendingRequests":
        return pending_requests_query(p)
    return queue_latency_query(p)


def gate_query(p: Placement) -> str:
    """What the admission gate compares with its threshold: its own metric, else the load metric.

    ``envoy.admissionGate.metric`` separates the gate from autoscaling (SuperSONIC's
    ``serverLoadMetric`` served both); unset, the gate follows the autoscaling metric as before.
    """
    gate = p.envoy.admission_gate
    if gate is not None and gate.metric == "query" and gate.query:
        return gate.query
    if gate is not None and gate.metric == "queueLatency":
        return queue_latency_query(p)
    return load_query(p)


def envoy_request_rate_query(p: Placement) -> str:
    """Client requests arriving at Envoy per second; exists even with zero Triton replicas."""
    sel = envoy_selector(p)
    window = rate_window(p, ENVOY_RATE_WINDOW)
    return f'sum(rate(envoy_http_downstream_rq_total{{{sel},envoy_http_conn_manager_prefix="{ENVOY_HTTP_PREFIX}"}}[{window}]))'


def activation_query(p: Placement) -> str:
    """What wakes a scaled-to-zero deployment: the declared activation query or Envoy's request rate."""
    a = p.autoscaling
    if a is not None and a.activation_query:
        return a.activation_query
    return envoy_request_rate_query(p)


def triton_up_query(p: Placement) -> str:
    """Triton replicas Prometheus scrapes successfully (0 or no data when none runs)."""
    return f"sum(up{{{triton_selector(p)}}})"


def load_total_query(p: Placement) -> str:
    """The load metric times the replica count, for KEDA's ``AverageValue`` metric type.

    KEDA's ``fallback`` works only with ``AverageValue`` (HPA divides the value by the replica
    count), while the load metric is a per-replica figure (``Value`` semantics). Multiplying by
    the replicas makes both give the same desired count: ceil(R * load / threshold).
    """
    return f"({load_query(p)}) * {triton_up_query(p)}"


def zero_when_absent(query: str) -> str:
    """``query``, or 0 when it has no series: what a KEDA trigger must send.

    KEDA's Prometheus scaler with ``ignoreNullValues: "false"`` turns an empty answer into an
    error (keda pkg/scalers/prometheus_scaler.go, ExecutePromQuery), an error with no active
    trigger and no fallback sets the ScaledObject Ready=False (pkg/scaling/executor/
    scale_scaledobjects.go, RequestScale: "TriggerError"), and Argo CD's
    resource_customizations/keda.sh/ScaledObject/health.lua reports Ready=False as Degraded,
    which fails the sync. The load metric has no series whenever no Triton runs, so at zero
    replicas, and for the first scrapes of every new deployment.

    ``or on() vector(0)`` adds a 0 only when ``query`` returns nothing (``on()`` matches any
    series of the left side), so a real value is never replaced and a multi-series answer stays
    the error it is. Unlike ``ignoreNullValues: "true"``, an unreachable Prometheus or a broken
    query still fails the trigger (and ``fallback`` can act); the alerts of
    :mod:`pipelines.render.monitoring` report a metric that is missing while Triton runs.
    """
    return f"({query}) or on() vector(0)"
