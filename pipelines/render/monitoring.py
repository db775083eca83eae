"""Monitoring of a deployment: what Prometheus scrapes, the rules it evaluates, the dashboard.

With the Prometheus Operator at the site (``prometheus.operator``): ServiceMonitors for Triton's
metrics port and Envoy's stats listener, and a PrometheusRule. Without it: one ConfigMap
holding an equivalent plain scrape configuration and rules file for the site's Prometheus.

Every target gets the labels ``namespace`` and ``service`` (``service`` = the Triton Service
name, or the Envoy *client* Service name for Envoy's stats) because the PromQL in
:mod:`pipelines.render.metrics` selects on them. :func:`prometheus_scrape_config` and
:func:`prometheus_rule_groups` are pure and also feed the local stack (static targets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.config import names
from pipelines.config.model import Placement, Site
from pipelines.modelrepo.lock import Lock
from pipelines.render import metrics
from pipelines.render.dashboard import render_dashboard
from pipelines.render.durations import go_duration
from pipelines.render.objects import meta
from pipelines.render.yamlout import dump

ENVOY_STATS_PATH = "/stats/prometheus"
TRITON_METRICS_PATH = "/metrics"
SCRAPE_CONFIG_KEY = "scrape-configs.yaml"
RULES_KEY = "rules.yaml"
LOAD_RECORD = "sonic:load"


def _rule_labels(p: Placement) -> dict[str, str]:
    return {"namespace": p.namespace, "sonic_experiment": p.experiment, "sonic_deployment": p.name}


def _healthy_upstreams(p: Placement) -> str:
    return f'envoy_cluster_membership_healthy{{{metrics.envoy_selector(p)},envoy_cluster_name="{names.ENVOY_UPSTREAM_CLUSTER}"}}'


def _total_upstreams(p: Placement) -> str:
    return f'envoy_cluster_membership_total{{{metrics.envoy_selector(p)},envoy_cluster_name="{names.ENVOY_UPSTREAM_CLUSTER}"}}'


def error_ratio_query(p: Placement) -> str:
    """Share of Triton inference requests that failed, over all replicas."""
    sel = metrics.triton_selector(p)
    window = metrics.rate_window(p, metrics.ERROR_RATIO_WINDOW)
    fail = f"sum(rate(nv_inference_request_failure{{{sel}}}[{window}]))"
    ok = f"sum(rate(nv_inference_request_success{{{sel}}}[{window}]))"
    return f"{fail} / ({ok} + {fail})"


def _alert(
    name: str, expr: str, for_: str, severity: str, labels: dict[str, str], summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {**labels, "severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def prometheus_rule_groups(p: Placement) -> list[dict[str, Any]]:
    """Rule groups of ``p``: the load-metric recording rule, then the alerts (when enabled)."""
    labels = _rule_labels(p)
    ref = names.deployment_ref(p)
    rules: list[dict[str, Any]] = [{"record": LOAD_RECORD, "expr": metrics.load_query(p), "labels": labels}]
    al = p.monitoring.alerts
    if al.enabled:
        for_ = go_duration(al.for_)
        rules.append(
            _alert(
                "SonicQueueLatencyHigh",
                f"{metrics.queue_latency_query(p)} > {al.queue_latency_ms:g}",
                for_,
                "warning",
                labels,
                f"{ref}: requests queue too long in Triton",
                f"Queueing per batch execution is {{{{ $value | humanize }}}} ms (alert above {al.queue_latency_ms:g} ms) "
                f"at site {p.site}.",
            )
        )
        rules.append(
            _alert(
                "SonicInferenceErrors",
                f"{error_ratio_query(p)} > {al.error_ratio:g}",
                for_,
                "warning",
                labels,
                f"{ref}: inference requests fail",
                f"{{{{ $value | humanizePercentage }}}} of inference requests fail (alert above {al.error_ratio:g}) at site {p.site}.",
            )
        )
        no_ready = f"(max({_healthy_upstreams(p)}) or vector(0)) == 0"
        scaled_to_zero_ok = p.autoscaling is not None and p.autoscaling.min == 0
        if scaled_to_zero_ok:
            # At zero replicas by design: alert only when clients are waiting.
            no_ready += f" and on() ({metrics.envoy_request_rate_query(p)} > 0)"
        if p.autoscaling is not None or p.replicas > 0:
            rules.append(
                _alert(
                    "SonicNoReadyReplicas",
                    no_ready,
                    for_,
                    "critical",
                    labels,
                    f"{ref}: no Triton replica is ready",
                    f"Envoy sees no healthy Triton pod at site {p.site}: clients get UNAVAILABLE.",
                )
            )
        gate = p.envoy.admission_gate
        if p.autoscaling is not None or (gate is not None and gate.enabled):
            # KEDA reads a missing load metric as 0 (metrics.zero_when_absent), which is right at
            # zero replicas and wrong while Triton serves: say so instead of scaling on nothing.
            rules.append(
                _alert(
                    "SonicLoadMetricMissing",
                    f"(max({_healthy_upstreams(p)}) > 0) unless on() ({metrics.load_query(p)})",
                    for_,
                    "critical",
                    labels,
                    f"{ref}: the load metric has no data while Triton serves",
                    "Envoy sees healthy Triton pods but the load query returns nothing at site "
                    f"{p.site}: autoscaling reads it as 0 and the admission gate cannot compare. "
                    "Check that Prometheus scrapes Triton's metrics port.",
                )
            )
        if p.autoscaling is not None and p.autoscaling.min == 0:
            rules.append(
                _alert(
                    "SonicActivationMetricMissing",
                    f"absent({metrics.activation_query(p)})",
                    for_,
                    "critical",
                    labels,
                    f"{ref}: the activation metric has no data",
                    f"The query that wakes this scaled-to-zero deployment returns nothing at site {p.site}: "
                    "KEDA reads it as 0, so arriving clients cannot wake it. Check that Prometheus scrapes Envoy.",
                )
            )
        rules.append(
            _alert(
                "SonicEnvoyUpstreamUnhealthy",
                f"{_healthy_upstreams(p)} < {_total_upstreams(p)}",
                for_,
                "warning",
                labels,
                f"{ref}: Envoy health checks fail for some Triton pods",
                "Envoy pod {{ $labels.pod }} sees {{ $value }} healthy Triton pods, fewer than it knows of, "
                f"at site {p.site}.",
            )
        )
    return [{"name": f"sonic.{p.experiment}.{p.name}", "rules": rules}]


def _sd_job(
    p: Placement, job: str, service: str, port: str, path: str, label_as: str, interval: str
) -> dict[str, Any]:
    return {
        "job_name": job,
        "scrape_interval": interval,
        "metrics_path": path,
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [p.namespace]}}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
                "regex": f"{service};{port}",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_namespace"],
                "target_label": "namespace",
                "action": "replace",
            },
            {"target_label": "service", "replacement": label_as, "action": "replace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod", "action": "replace"},
        ],
    }


def _static_job(
    p: Placement, job: str, targets: Sequence[str], path: str, label_as: str, interval: str
) -> dict[str, Any]:
    return {
        "job_name": job,
        "scrape_interval": interval,
        "metrics_path": path,
        "static_configs": [
            {"targets": list(targets), "labels": {"namespace": p.namespace, "service": label_as}}
        ],
        # One process per address on one machine: the address stands for the pod.
        "relabel_configs": [{"source_labels": ["__address__"], "target_label": "pod", "action": "replace"}],
    }


def prometheus_scrape_config(
    p: Placement,
    *,
    triton_targets: Sequence[str] | None = None,
    envoy_targets: Sequence[str] | None = None,
    scrape_interval: float | None = None,
) -> list[dict[str, Any]]:
    """Plain Prometheus ``scrape_configs`` entries for Triton's metrics and Envoy's stats.

    Without targets: Kubernetes endpoint discovery in the deployment's namespace. With
    ``triton_targets`` / ``envoy_targets`` (``host:port`` strings): static targets, as the
    local stack runs them. Either way the labels match :mod:`pipelines.render.metrics`.
    """
    interval = go_duration(scrape_interval if scrape_interval is not None else p.monitoring.scrape_interval)
    triton_job = f"{p.namespace}/{names.triton_name(p)}"
    envoy_job = f"{p.namespace}/{names.envoy_name(p)}"
    jobs: list[dict[str, Any]] = []
    if triton_targets is not None:
        jobs.append(
            _static_job(p, triton_job, triton_targets, TRITON_METRICS_PATH, names.triton_name(p), interval)
        )
    else:
        jobs.append(
            _sd_job(
                p,
                triton_job,
                names.triton_name(p),
                "metrics",
                TRITON_METRICS_PATH,
                names.triton_name(p),
                interval,
            )
        )
    if envoy_targets is not None:
        jobs.append(_static_job(p, envoy_job, envoy_targets, ENVOY_STATS_PATH, names.envoy_name(p), interval))
    else:
        jobs.append(
            _sd_job(
                p,
                envoy_job,
                names.envoy_stats_name(p),
                "stats",
                ENVOY_STATS_PATH,
                names.envoy_name(p),
                interval,
            )
        )
    return jobs


def _monitor_labels(p: Placement, site: Site) -> dict[str, str]:
    extra = dict(site.prometheus.rule_labels) if site.prometheus else {}
    return {**names.labels(p, "monitoring"), **extra}


def _service_monitor(
    p: Placement,
    site: Site,
    name: str,
    selector: dict[str, str],
    port: str,
    path: str,
    service_label: str,
) -> dict[str, Any]:
    m = meta(p, "monitoring", name)
    m["labels"] = _monitor_labels(p, site)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": m,
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [p.namespace]},
            "endpoints": [
                {
                    "port": port,
                    "path": path,
                    "interval": go_duration(p.monitoring.scrape_interval),
                    "honorLabels": False,
                    # The operator already sets namespace/service/pod; service is pinned because the
                    # PromQL selects Envoy's stats by the client Service's name.
                    "relabelings": [
                        {"action": "replace", "targetLabel": "service", "replacement": service_label}
                    ],
                }
            ],
        },
    }


def render_monitoring(p: Placement, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
    """ServiceMonitors + PrometheusRule (operator sites) or the plain-Prometheus ConfigMap; the dashboard."""
    objs: list[dict[str, Any]] = []
    if site.prometheus is not None and site.prometheus.operator:
        objs.append(
            _service_monitor(
                p,
                site,
                names.triton_name(p),
                names.selector(p, "triton"),
                "metrics",
                TRITON_METRICS_PATH,
                names.triton_name(p),
            )
        )
        objs.append(
            _service_monitor(
                p,
                site,
                names.envoy_name(p),
                {**names.selector(p, "envoy"), names.ROLE_LABEL: "stats"},
                "stats",
                ENVOY_STATS_PATH,
                names.envoy_name(p),
            )
        )
        m = meta(p, "monitoring", names.monitoring_name(p))
        m["labels"] = _monitor_labels(p, site)
        objs.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": m,
                "spec": {"groups": prometheus_rule_groups(p)},
            }
        )
    elif site.prometheus is not None:
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta(p, "monitoring", names.monitoring_name(p)),
                "data": {
                    SCRAPE_CONFIG_KEY: dump(prometheus_scrape_config(p)),
                    RULES_KEY: dump({"groups": prometheus_rule_groups(p)}),
                },
            }
        )
    if p.monitoring.dashboard:
        objs.append(render_dashboard(p, site))
    return objs
