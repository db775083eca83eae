"""The PromQL this project relies on: the load metric (shared by KEDA, the admission gate, the
recording rule, the dashboard and the checks) and the Envoy-side activation metric.

Prometheus target labels ``namespace`` and ``service`` are set by the ServiceMonitors (and by
the local scrape configuration), so the same query works at every site and on a laptop.
"""

from __future__ import annotations

from pipelines.config.model import SiteDeployment
from pipelines.render.names import ENVOY_HTTP_PREFIX, envoy_name, triton_name


def triton_selector(p: SiteDeployment) -> str:
    return f'namespace="{p.namespace}",service="{triton_name(p)}"'


def envoy_selector(p: SiteDeployment) -> str:
    return f'namespace="{p.namespace}",service="{envoy_name(p)}"'


def queue_latency_query(p: SiteDeployment, window: str = "30s") -> str:
    """SuperSONIC's load metric: milliseconds of queueing per batch execution, over all replicas."""
    sel = triton_selector(p)
    return (
        f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[{window}]))"
        f" / (sum(rate(nv_inference_exec_count{{{sel}}}[{window}])) * 1000 + 0.001)"
    )


def pending_requests_query(p: SiteDeployment) -> str:
    """Requests waiting in Triton, averaged per replica."""
    sel = triton_selector(p)
    return f"avg(nv_inference_pending_request_count{{{sel}}})"


def load_query(p: SiteDeployment) -> str:
    """The deployment's load metric: what autoscaling targets and the admission gate compares."""
    a = p.autoscaling
    if a is not None and a.metric == "query" and a.query:
        return a.query
    if a is not None and a.metric == "pendingRequests":
        return pending_requests_query(p)
    return queue_latency_query(p)


def envoy_request_rate_query(p: SiteDeployment, window: str = "2m") -> str:
    """Client requests arriving at Envoy per second; exists even with zero Triton replicas."""
    sel = envoy_selector(p)
    return f'sum(rate(envoy_http_downstream_rq_total{{{sel},envoy_http_conn_manager_prefix="{ENVOY_HTTP_PREFIX}"}}[{window}]))'


def activation_query(p: SiteDeployment) -> str:
    """What wakes a scaled-to-zero deployment: the declared activation query or Envoy's request rate."""
    a = p.autoscaling
    if a is not None and a.activation_query:
        return a.activation_query
    return envoy_request_rate_query(p)


def triton_up_query(p: SiteDeployment) -> str:
    """Triton replicas Prometheus scrapes successfully (0 or no data when none runs)."""
    return f"sum(up{{{triton_selector(p)}}})"


def load_total_query(p: SiteDeployment) -> str:
    """The load metric times the replica count, for KEDA's ``AverageValue`` metric type.

    KEDA's ``fallback`` works only with ``AverageValue`` (HPA divides the value by the replica
    count), while the load metric is a per-replica figure (``Value`` semantics). Multiplying by
    the replicas makes both give the same desired count: ceil(R * load / threshold).
    """
    return f"({load_query(p)}) * {triton_up_query(p)}"
