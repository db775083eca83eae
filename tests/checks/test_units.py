"""The checks' pure parts: Prometheus answers, served-config comparison, reference comparison,
synthetic inputs, endpoint parsing. No servers needed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2, service_pb2

from pipelines.checks import Endpoint, EndpointError
from pipelines.checks.inference import compare
from pipelines.checks.model_config import differences
from pipelines.checks.prometheus import instant_query, parse
from pipelines.checks.result import CheckResult, Report
from pipelines.checks.scaling import judge
from pipelines.checks.tensors import ModelPlan, TensorError, plans, synthetic_inputs
from pipelines.config import load_tree
from pipelines.config.model import Placement, Reference
from pipelines.local.processes import free_port


@pytest.fixture(scope="module")
def minimal(fixture_root: Path) -> Placement:
    tree = load_tree(fixture_root)
    return tree.deployment("cms/minimal").placements[0]


# --- Prometheus answers -----------------------------------------------------------------------------


def vector(*values: str) -> dict[str, object]:
    return {"resultType": "vector", "result": [{"metric": {}, "value": [1712345678.5, v]} for v in values]}


def test_one_finite_sample_is_the_value() -> None:
    answer = parse("q", vector("12.5"))
    assert answer.ok and answer.value == 12.5


def test_scalar_answer_with_integer_timestamp() -> None:
    answer = parse("q", {"resultType": "scalar", "result": [1712345678, "3"]})
    assert answer.ok and answer.value == 3.0


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (vector(), "empty"),
        (vector("1", "2"), "multiple"),
        (vector("NaN"), "not-finite"),
        (vector("+Inf"), "not-finite"),
        (vector("abc"), "error"),
        ({"resultType": "matrix", "result": []}, "error"),
        (None, "error"),
    ],
)
def test_unusable_answers_are_named(data: object, problem: str) -> None:
    answer = parse("q", data)
    assert not answer.ok and answer.problem == problem


def test_unreachable_prometheus_is_unavailable_not_an_exception() -> None:
    answer = instant_query(f"http://127.0.0.1:{free_port()}", "up", timeout=2.0)
    assert answer.problem == "unavailable"
    assert "unreachable" in answer.detail


def test_empty_answer_fails_loudly_naming_keda() -> None:
    status, detail, _ = judge(parse("q", vector()), ["KEDA trigger", "admission gate"], 'namespace="x"')
    assert status == "fail"
    assert "EMPTY ANSWER" in detail and "SILENTLY STOPS SCALING" in detail and "admission gate" in detail


def test_unavailable_says_metric_unavailable() -> None:
    answer = instant_query(f"http://127.0.0.1:{free_port()}", "up", timeout=2.0)
    status, detail, _ = judge(answer, ["admission gate"], "")
    assert status == "fail" and detail.startswith("metric unavailable")


# --- served config against the declaration -------------------------------------------------------------


def served(
    p: Placement, **changes: Any
) -> tuple[service_pb2.ModelMetadataResponse, model_config_pb2.ModelConfig]:
    m = p.models[0]
    meta = service_pb2.ModelMetadataResponse(name=m.name, versions=["1"], platform="python")
    cfg = model_config_pb2.ModelConfig(
        name=m.name, max_batch_size=int(changes.get("max_batch_size", m.max_batch_size))
    )
    for t in m.inputs:
        dims = list(changes.get(f"dims:{t.name}", t.dims))
        meta.inputs.add(name=t.name, datatype=str(changes.get(f"dtype:{t.name}", t.dtype)), shape=[-1, *dims])
        cfg.input.add(name=t.name, data_type=model_config_pb2.DataType.Value(f"TYPE_{t.dtype}"), dims=dims)
    for t in m.outputs:
        meta.outputs.add(name=t.name, datatype=t.dtype, shape=[-1, *t.dims])
        cfg.output.add(
            name=t.name, data_type=model_config_pb2.DataType.Value(f"TYPE_{t.dtype}"), dims=list(t.dims)
        )
    return meta, cfg


def test_matching_model_has_no_differences(minimal: Placement) -> None:
    assert differences(minimal.models[0], *served(minimal)) == []


def test_each_differing_field_is_named(minimal: Placement) -> None:
    meta, cfg = served(
        minimal, max_batch_size=8, **{"dims:cpf_features": [25, 15], "dtype:global_features": "FP16"}
    )
    diffs = differences(minimal.models[0], meta, cfg)
    assert "maxBatchSize: served 8, declared 64" in diffs
    assert any(d.startswith("inputs.cpf_features.dims: served shape [-1, 25, 15]") for d in diffs)
    assert any(d.startswith("inputs.global_features.dtype: served FP16, declared FP32") for d in diffs)


def test_missing_and_extra_tensors(minimal: Placement) -> None:
    meta, cfg = served(minimal)
    del meta.outputs[:]
    meta.outputs.add(name="logits", datatype="FP32", shape=[-1, 6])
    diffs = differences(minimal.models[0], meta, cfg)
    assert "outputs.softmax: declared but not served" in diffs
    assert "outputs.logits: served but not declared" in diffs


# --- reference comparison --------------------------------------------------------------------------------


def test_reference_within_tolerance_reports_max_diff() -> None:
    want = {"y": np.array([[0.5, 0.5]], dtype=np.float32)}
    got = {"y": np.array([[0.500001, 0.5]], dtype=np.float32)}
    status, _, data = compare(got, want, Reference(inputs="i.npz", outputs="o.npz", atol=1e-5, rtol=0))
    assert status == "pass"
    assert 0 < data["max_abs_diff"]["y"] < 1e-5  # type: ignore[index]


def test_reference_outside_tolerance_fails_with_count_and_diff() -> None:
    want = {"y": np.zeros((2, 3), dtype=np.float32)}
    got = {"y": np.array([[0, 0, 0.1], [0, 0, 0]], dtype=np.float32)}
    status, detail, _ = compare(got, want, Reference(inputs="i.npz", outputs="o.npz", atol=1e-5, rtol=1e-4))
    assert status == "fail"
    assert "1 of 6 values outside" in detail and "max abs diff 0.1" in detail


def test_reference_shape_and_missing_output() -> None:
    ref = Reference(inputs="i.npz", outputs="o.npz", atol=1e-5, rtol=1e-4)
    status, detail, _ = compare({"y": np.zeros((1, 3))}, {"y": np.zeros((2, 3)), "z": np.zeros(1)}, ref)
    assert status == "fail"
    assert (
        "y: shape [1, 3], reference [2, 3]" in detail
        and "z: in the reference file but not in the response" in detail
    )


# --- synthetic inputs ---------------------------------------------------------------------------------


def test_synthetic_inputs_are_seeded_and_shaped(minimal: Placement) -> None:
    (plan,) = plans(minimal)
    a, b = synthetic_inputs(plan), synthetic_inputs(plan)
    assert a.keys() == b.keys() == {"global_features", "cpf_features"}
    assert a["cpf_features"].shape == (4, 25, 16) and a["cpf_features"].dtype == np.float32
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_dynamic_dims_need_declared_shapes(minimal: Placement) -> None:
    model = minimal.models[0]
    dyn = model.model_copy(update={"inputs": (model.inputs[0].model_copy(update={"dims": (-1, 16)}),)})
    with pytest.raises(TensorError, match=r"checks.models\[\].shapes.global_features"):
        synthetic_inputs(ModelPlan(dyn, 2, {}, None))
    arrays = synthetic_inputs(ModelPlan(dyn, 2, {"global_features": (7, 16)}, None))
    assert arrays["global_features"].shape == (2, 7, 16)


# --- endpoint and report ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["localhost", "http://a:1", "a:0", "a:70000", ":80", "a b:1"])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(EndpointError, match="HOST:PORT"):
        Endpoint.parse(text)


def test_endpoint_token_header() -> None:
    ep = Endpoint.parse("127.0.0.1:8001", token="abc")
    assert ep.headers() == {"authorization": "Bearer abc"}
    assert ep.headers(anonymous=True) is None


def test_report_passes_with_skips_and_fails_with_one_failure() -> None:
    ok = Report("e/d", "s", "h:1", (CheckResult("a", "", "pass", ""), CheckResult("b", "", "skip", "why")))
    assert ok.passed and ok.counts() == {"pass": 1, "fail": 0, "skip": 1}
    bad = Report("e/d", "s", "h:1", (*ok.results, CheckResult("c", "m", "fail", "x", data={"v": math.pi})))
    assert not bad.passed and bad.result("c", "m") is bad.failures[0]
    assert bad.as_dict()["checks"][2]["data"] == {"v": math.pi}
