"""The rendered PromQL against series, through the real ``promtool test rules`` (issue 10, defect 3).

What decides these rules upstream:

- KEDA's Prometheus scaler turns an empty answer into an error while ``ignoreNullValues`` is
  "false" (keda pkg/scalers/prometheus_scaler.go, ExecutePromQuery: "the result is empty"),
  and a single-element answer into its value;
- with no active trigger and no fallback, an erroring trigger sets the ScaledObject
  Ready=False "TriggerError" (keda pkg/scaling/executor/scale_scaledobjects.go, RequestScale);
- Argo CD's resource_customizations/keda.sh/ScaledObject/health.lua maps Ready=False to
  Degraded, and gitops-engine pkg/sync/sync_context.go fails the sync on a Degraded object.

So every KEDA trigger must answer exactly one number when no Triton runs, and ``rate()`` must
keep a value when one scrape is missed (two samples inside the window).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from pipelines.config.model import Placement
from pipelines.config.names import ENVOY_HTTP_PREFIX, ENVOY_UPSTREAM_CLUSTER
from pipelines.render import metrics
from pipelines.render.keda import render_keda
from pipelines.render.monitoring import prometheus_rule_groups
from tests.render.support import all_objects, find, placement, placements

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)

SCRAPE = "15s"  # the examples' monitoring.scrapeInterval (default)


def _promtool_test(
    tmp_path: Path, tests: list[dict[str, Any]], groups: list[dict[str, Any]] | None = None
) -> None:
    """Run ``promtool test rules`` on ``tests`` (with ``groups`` as the rule file); fail with its output."""
    assert PROMTOOL is not None
    rule_files = []
    if groups is not None:
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        rule_files = ["rules.yaml"]
    path = tmp_path / "test.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": rule_files, "evaluation_interval": "15s", "tests": tests}, sort_keys=False
        )
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


def _envoy_series(p: Placement, healthy: int) -> list[dict[str, str]]:
    """Envoy, scraped and counting client requests; Envoy sees ``healthy`` Triton pods."""
    who = {"namespace": p.namespace, "service": f"{p.name}-envoy", "pod": "envoy-0"}
    return [
        {
            "series": "envoy_http_downstream_rq_total"
            + _labels(**who, envoy_http_conn_manager_prefix=ENVOY_HTTP_PREFIX),
            "values": "0+30x40",
        },
        {
            "series": "envoy_cluster_membership_healthy"
            + _labels(**who, envoy_cluster_name=ENVOY_UPSTREAM_CLUSTER),
            "values": f"{healthy}x40",
        },
        {
            "series": "envoy_cluster_membership_total"
            + _labels(**who, envoy_cluster_name=ENVOY_UPSTREAM_CLUSTER),
            "values": f"{healthy}x40",
        },
        {"series": "up" + _labels(**who), "values": "1x40"},
    ]


def _triton_series(p: Placement, queue: str = "0+150000x40", execs: str = "0+15x40") -> list[dict[str, str]]:
    """One Triton replica: 10 ms of queueing per second and one batch execution per second."""
    who = {"namespace": p.namespace, "service": f"{p.name}-triton", "pod": "triton-0"}
    return [
        {"series": "nv_inference_queue_duration_us" + _labels(**who, model="m"), "values": queue},
        {"series": "nv_inference_exec_count" + _labels(**who, model="m"), "values": execs},
        {"series": "nv_inference_pending_request_count" + _labels(**who, model="m"), "values": "2x40"},
        {"series": "nv_inference_request_success" + _labels(**who, model="m"), "values": "0+15x40"},
        {"series": "nv_inference_request_failure" + _labels(**who, model="m"), "values": "0x40"},
        {"series": "up" + _labels(**who), "values": "1x40"},
    ]


def _autoscaled() -> list[Placement]:
    """Every autoscaled example, and each of them again with ``fallbackReplicas`` (the other query)."""
    out = []
    for p, _ in placements():
        if p.autoscaling is not None:
            out.append(p)
            out.append(
                p.model_copy(
                    update={"autoscaling": p.autoscaling.model_copy(update={"fallback_replicas": 1})}
                )
            )
    assert any(p.autoscaling and p.autoscaling.min == 0 for p in out)  # a scale-to-zero example is covered
    return out


def _triggers(p: Placement) -> list[dict[str, Any]]:
    _, site = placement(p.site, p.name)
    triggers: list[dict[str, Any]] = find(render_keda(p, site, None), "ScaledObject")["spec"]["triggers"]
    return triggers


def test_every_trigger_answers_one_number_when_no_triton_runs(tmp_path: Path) -> None:
    """At zero replicas, and before anything of a new deployment is scraped, no trigger is empty."""
    tests = []
    for p in _autoscaled():
        triggers = {t["name"]: t["metadata"]["query"] for t in _triggers(p)}
        # Scaled to zero, clients arriving: the load is 0, the wake trigger sees Envoy's 2 req/s.
        at_zero = [
            {"expr": triggers["load"], "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 0}]}
        ]
        if "wake" in triggers:
            at_zero.append(
                {"expr": triggers["wake"], "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 2}]}
            )
        # The control: the bare load metric is empty here, which KEDA reports as a trigger error.
        at_zero.append({"expr": metrics.load_query(p), "eval_time": "5m", "exp_samples": []})
        tests.append(
            {"interval": SCRAPE, "input_series": _envoy_series(p, healthy=0), "promql_expr_test": at_zero}
        )
        # A new deployment that Prometheus has not scraped yet: every trigger is 0, none an error.
        unscraped = [
            {"expr": q, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 0}]}
            for q in triggers.values()
        ]
        tests.append(
            {
                "interval": SCRAPE,
                "input_series": [{"series": 'up{job="other"}', "values": "1x40"}],
                "promql_expr_test": unscraped,
            }
        )
    _promtool_test(tmp_path, tests)


def test_triggers_read_the_metric_while_triton_runs(tmp_path: Path) -> None:
    """With Triton scraped, the wrapped trigger is exactly the metric (the 0 never replaces a value)."""
    tests = []
    for p in _autoscaled():
        fallback = p.autoscaling is not None and p.autoscaling.fallback_replicas is not None
        raw = metrics.load_total_query(p) if fallback else metrics.load_query(p)
        load = _triggers(p)[0]
        assert load["name"] == "load"
        same = f"abs(({load['metadata']['query']}) - ({raw})) < bool 1e-9"
        checks = [
            {"expr": same, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 1}]},
            {
                "expr": f"({raw}) > 0",
                "eval_time": "5m",
                "exp_samples": [{"labels": "{}", "value": _expected(p)}],
            },
        ]
        series = _triton_series(p) + _envoy_series(p, healthy=1)
        tests.append({"interval": SCRAPE, "input_series": series, "promql_expr_test": checks})
    _promtool_test(tmp_path, tests)


def _expected(p: Placement) -> float:
    """The load the series of :func:`_triton_series` give, as the deployment measures it."""
    assert p.autoscaling is not None
    if p.autoscaling.metric == "pendingRequests":
        return 2.0
    # 10,000 us of queueing per second over 1 execution per second, in ms (+0.001 guards 0/0);
    # one replica scraped, so the fallback variant's "x replicas" changes nothing.
    return 10000 / (1 * 1000 + 0.001)


def test_load_window_survives_one_missed_scrape(tmp_path: Path) -> None:
    """The rendered window keeps two samples when a scrape is missed; SuperSONIC's [30s] does not."""
    p, _ = placement("geddes", "particlenet")
    assert p.monitoring.scrape_interval == 15
    query = metrics.load_query(p)
    short = query.replace(f"[{metrics.rate_window(p)}]", "[30s]")
    assert short != query
    # Scrapes every 15 s; the one at 60 s is missing. At 67 s, [30s] holds only the 45 s sample.
    gap = "0 150000 300000 450000 _ 750000 900000 1050000"
    execs = "0 15 30 45 _ 75 90 105"
    series = _triton_series(p, queue=gap, execs=execs)
    checks = [
        {"expr": f"count({query})", "eval_time": "67s", "exp_samples": [{"labels": "{}", "value": 1}]},
        {"expr": f"count({short})", "eval_time": "67s", "exp_samples": []},
    ]
    _promtool_test(tmp_path, [{"interval": SCRAPE, "input_series": series, "promql_expr_test": checks}])


def _alert(p: Placement, name: str) -> dict[str, Any]:
    rule: dict[str, Any] = next(r for r in prometheus_rule_groups(p)[0]["rules"] if r.get("alert") == name)
    return rule


def _firing(p: Placement, name: str) -> list[dict[str, Any]]:
    rule = _alert(p, name)
    return [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]


def test_missing_metrics_alert_instead_of_scaling_on_zero(tmp_path: Path) -> None:
    """The alerts that watch what zero_when_absent hides: a metric missing while it should exist."""
    p, _ = placement("nautilus", "cnn-classifier")  # scale to zero, admission gate on
    assert p.autoscaling is not None and p.autoscaling.min == 0
    at = "10m"  # past every alert's "for"
    missing_load, missing_wake = "SonicLoadMetricMissing", "SonicActivationMetricMissing"
    tests = [
        # Triton serves (Envoy sees a healthy pod) but its metrics are not scraped.
        {
            "interval": SCRAPE,
            "input_series": _envoy_series(p, healthy=1),
            "alert_rule_test": [
                {"eval_time": at, "alertname": missing_load, "exp_alerts": _firing(p, missing_load)},
                {"eval_time": at, "alertname": missing_wake, "exp_alerts": []},
            ],
        },
        # Scaled to zero on purpose: nothing is missing.
        {
            "interval": SCRAPE,
            "input_series": _envoy_series(p, healthy=0),
            "alert_rule_test": [
                {"eval_time": at, "alertname": missing_load, "exp_alerts": []},
                {"eval_time": at, "alertname": missing_wake, "exp_alerts": []},
            ],
        },
        # Everything scraped.
        {
            "interval": SCRAPE,
            "input_series": _triton_series(p) + _envoy_series(p, healthy=1),
            "alert_rule_test": [
                {"eval_time": at, "alertname": missing_load, "exp_alerts": []},
                {"eval_time": at, "alertname": missing_wake, "exp_alerts": []},
            ],
        },
        # Envoy is not scraped: nothing can wake the deployment.
        {
            "interval": SCRAPE,
            "input_series": [{"series": 'up{job="other"}', "values": "1x40"}],
            "alert_rule_test": [
                {"eval_time": at, "alertname": missing_wake, "exp_alerts": _firing(p, missing_wake)}
            ],
        },
    ]
    _promtool_test(tmp_path, tests, prometheus_rule_groups(p))


DURATION = re.compile(r"\[([0-9]+(?:ms|s|m|h|d|w|y))(?::[^\]]*)?\]")
UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str) -> float:
    n, unit = re.fullmatch(r"([0-9]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return int(n) * UNIT[unit]


def test_every_rendered_range_spans_four_scrapes() -> None:
    """KEDA triggers, recording rules, alerts, the gate's query (URL-encoded in envoy.yaml), dashboards."""
    seen = 0
    for ident, obj in all_objects():
        if obj["kind"] not in ("ScaledObject", "PrometheusRule", "ConfigMap"):
            continue
        p = next(
            p for p, _ in placements() if ident.endswith(f"/{p.name}") and ident.startswith(f"{p.site}/")
        )
        text = unquote(yaml.safe_dump(obj))
        for window in DURATION.findall(text):
            seen += 1
            # Four, not metrics.RATE_SCRAPES: the test states the rule rather than restating the code.
            assert _seconds(window) >= 4 * p.monitoring.scrape_interval, (
                f"{ident}: {obj['kind']} {obj['metadata']['name']}: [{window}] is shorter than four scrapes"
            )
    assert seen > 100
