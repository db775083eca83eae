"""The Grafana dashboard of a deployment, as a ConfigMap that Grafana's dashboard sidecar loads.

Panels follow SuperSONIC's dashboard: latency breakdown (queue, compute input/infer/output,
and Envoy's total per request), inferences per second by pod and model, replicas, and the
load metric against the thresholds that act on it (KEDA, the admission gate, the alert);
GPU utilisation for GPU deployments. The datasource is a dashboard variable, so the JSON
holds no URL and no credential (and Grafana itself is not rendered here: no admin password,
no anonymous access).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipelines.config import names
from pipelines.config.model import Placement, Site
from pipelines.render import metrics
from pipelines.render.objects import meta

DASHBOARD_LABEL = "grafana_dashboard"  # what the kube-prometheus-stack / Grafana sidecar watches
_DS = {"type": "prometheus", "uid": "${datasource}"}


def _per_request_ms(p: Placement, metric: str) -> str:
    sel = metrics.triton_selector(p)
    window = metrics.rate_window(p)
    return (
        f"sum(rate({metric}{{{sel}}}[{window}])) / "
        f"clamp_min(sum(rate(nv_inference_request_success{{{sel}}}[{window}])), 1e-9) / 1000"
    )


def _envoy_total_ms(p: Placement) -> str:
    sel = f'{metrics.envoy_selector(p)},envoy_cluster_name="{names.ENVOY_UPSTREAM_CLUSTER}"'
    window = metrics.rate_window(p)
    return (
        f"sum(rate(envoy_cluster_upstream_rq_time_sum{{{sel}}}[{window}])) / "
        f"clamp_min(sum(rate(envoy_cluster_upstream_rq_time_count{{{sel}}}[{window}])), 1e-9)"
    )


def _panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]], x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": _DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": _DS, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard(p: Placement) -> dict[str, Any]:
    """The dashboard JSON model (Grafana schema 39)."""
    sel = metrics.triton_selector(p)
    thresholds: list[tuple[str, str]] = [("load metric", metrics.load_query(p))]
    if p.autoscaling is not None:
        thresholds.append(("autoscaling threshold", f"vector({p.autoscaling.threshold:g})"))
    gate = p.envoy.admission_gate
    if gate is not None and gate.enabled:
        if metrics.gate_query(p) != metrics.load_query(p):
            thresholds.append(("admission gate metric", metrics.gate_query(p)))
        thresholds.append(("admission gate threshold", f"vector({gate.threshold:g})"))
    if p.monitoring.alerts.enabled:
        thresholds.append(("queue latency alert (ms)", f"vector({p.monitoring.alerts.queue_latency_ms:g})"))
    specs: list[tuple[str, str, list[tuple[str, str]]]] = [
        (
            "Latency per request (breakdown)",
            "ms",
            [
                ("queue", _per_request_ms(p, "nv_inference_queue_duration_us")),
                ("compute input", _per_request_ms(p, "nv_inference_compute_input_duration_us")),
                ("compute infer", _per_request_ms(p, "nv_inference_compute_infer_duration_us")),
                ("compute output", _per_request_ms(p, "nv_inference_compute_output_duration_us")),
                ("Envoy total", _envoy_total_ms(p)),
            ],
        ),
        (
            "Inferences per second by pod and model",
            "ops",
            [
                (
                    "{{pod}} {{model}}",
                    f"sum by (pod, model) (rate(nv_inference_count{{{sel}}}[{metrics.rate_window(p)}]))",
                )
            ],
        ),
        (
            "Replicas",
            "short",
            [
                ("Triton replicas scraped", metrics.triton_up_query(p)),
                (
                    "healthy in Envoy",
                    f'max(envoy_cluster_membership_healthy{{{metrics.envoy_selector(p)},envoy_cluster_name="{names.ENVOY_UPSTREAM_CLUSTER}"}})',
                ),
            ],
        ),
        ("Load metric vs thresholds", "short", thresholds),
    ]
    if p.gpus_per_pod:
        specs.append(
            (
                "GPU utilisation by pod",
                "percentunit",
                [("{{pod}}", f"avg by (pod) (nv_gpu_utilization{{{sel}}})")],
            )
        )
    panels = [
        _panel(i + 1, title, unit, targets, x=12 * (i % 2), y=8 * (i // 2))
        for i, (title, unit, targets) in enumerate(specs)
    ]
    uid = "sonic-" + hashlib.sha256(f"{p.site}/{p.ref}".encode()).hexdigest()[:16]
    return {
        "uid": uid,
        "title": f"SONIC {p.ref} at {p.site}",
        "tags": ["sonic", p.experiment, p.site],
        "editable": False,
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"}
            ]
        },
        "panels": panels,
    }


def render_dashboard(p: Placement, site: Site) -> dict[str, Any]:
    """ConfigMap labelled ``grafana_dashboard: "1"`` holding the dashboard JSON."""
    m = meta(p, "monitoring", names.dashboard_name(p))
    m["labels"][DASHBOARD_LABEL] = "1"
    text = json.dumps(dashboard(p), indent=2, sort_keys=True) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": m,
        "data": {f"{p.experiment}-{p.name}.json": text},
    }
