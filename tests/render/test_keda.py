"""KEDA: SuperSONIC defect 5 (fallback with Value, min 0 lost, scale from zero never wakes)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft7Validator

from pipelines.config.model import Placement
from pipelines.render import metrics
from pipelines.render.keda import render_keda
from tests.render.support import CRDS, all_objects, crd_schema, find, placement, rendered


def _with(p: Placement, **changes: Any) -> Placement:
    assert p.autoscaling is not None
    return p.model_copy(update={"autoscaling": p.autoscaling.model_copy(update=changes)})


def _metric_names(query: str) -> set[str]:
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", query))


def test_fallback_never_with_value_metric_type() -> None:
    for ident, obj in all_objects():
        if obj["kind"] != "ScaledObject":
            continue
        types = {t["metricType"] for t in obj["spec"]["triggers"]}
        if "fallback" in obj["spec"]:
            assert types == {"AverageValue"}, ident
        assert all(t["metadata"]["ignoreNullValues"] == "false" for t in obj["spec"]["triggers"]), ident


def test_fallback_switches_every_trigger_to_average_value() -> None:
    p, site = placement("geddes", "particlenet")
    so = find(render_keda(_with(p, fallback_replicas=3), site, None), "ScaledObject")
    assert so["spec"]["fallback"] == {"failureThreshold": 3, "replicas": 3}
    load = so["spec"]["triggers"][0]
    assert load["metricType"] == "AverageValue"
    # Same desired count as Value on the load metric: load x replicas against the threshold.
    assert load["metadata"]["query"] == metrics.zero_when_absent(metrics.load_total_query(p))
    plain = find(render_keda(p, site, None), "ScaledObject")
    assert "fallback" not in plain["spec"] and plain["spec"]["triggers"][0]["metricType"] == "Value"


def test_min_zero_is_kept_and_wakes_on_an_envoy_metric() -> None:
    p, _ = placement("nautilus", "cnn-classifier")  # min: 0
    so = find(rendered(p), "ScaledObject")
    assert so["spec"]["minReplicaCount"] == 0
    wake = [t for t in so["spec"]["triggers"] if t["name"] == "wake"]
    assert len(wake) == 1
    names = _metric_names(wake[0]["metadata"]["query"])
    assert names and not any(n.startswith("nv_") for n in names), names
    assert all(n.startswith("envoy_") for n in names)


def test_no_wake_trigger_when_never_at_zero() -> None:
    p, _ = placement("geddes", "particlenet")
    so = find(rendered(p), "ScaledObject")
    assert so["spec"]["minReplicaCount"] == 1
    assert [t["name"] for t in so["spec"]["triggers"]] == ["load"]


def test_trigger_settings_and_behavior() -> None:
    p, _ = placement("geddes", "particlenet")
    so = find(rendered(p), "ScaledObject")
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == "particlenet-triton"
    assert (spec["pollingInterval"], spec["cooldownPeriod"], spec["maxReplicaCount"]) == (15, 300, 11)
    load = spec["triggers"][0]
    assert load["metadata"]["query"] == metrics.zero_when_absent(metrics.load_query(p))
    assert load["metadata"]["threshold"] == "20"
    assert load["metadata"]["serverAddress"] == "https://prometheus-af.geddes.rcac.purdue.edu"
    up = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]
    assert up["stabilizationWindowSeconds"] == 30
    assert up["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 15}]


def test_bearer_auth_through_trigger_authentication() -> None:
    p, _ = placement("geddes", "particlenet")
    objs = rendered(p)
    ta = find(objs, "TriggerAuthentication")
    assert ta["spec"]["secretTargetRef"] == [
        {"parameter": "bearerToken", "name": "prometheus-token", "key": "token"}
    ]
    trigger = find(objs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["authenticationRef"] == {"name": ta["metadata"]["name"]}
    assert trigger["metadata"]["authModes"] == "bearer"
    q, _ = placement("nautilus", "cnn-classifier")  # no auth at nautilus
    assert not [o for o in rendered(q) if o["kind"] == "TriggerAuthentication"]


def test_nothing_without_autoscaling() -> None:
    p, site = placement("nautilus", "particlenet")
    assert p.autoscaling is None
    assert render_keda(p, site, None) == []


@pytest.mark.skipif(not CRDS.is_dir(), reason=f"the shared CRDs are not at {CRDS}")
def test_variants_match_the_crd() -> None:
    p, site = placement("geddes", "particlenet")
    for variant in (_with(p, fallback_replicas=2), _with(p, min=0), _with(p, min=0, fallback_replicas=1)):
        for obj in render_keda(variant, site, None):
            errors = list(Draft7Validator(crd_schema(obj["kind"], "v1alpha1")).iter_errors(obj))
            assert not errors, [e.message for e in errors]
