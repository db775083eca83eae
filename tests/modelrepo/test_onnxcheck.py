"""Declared (or supplied) model configs cross-checked against real ONNX graphs: precise, located errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.config.errors import ConfigError
from pipelines.config.modelconfig.onnxcheck import dims_problem, read_graph
from pipelines.modelrepo.build import BuildResult
from tests.modelrepo.support import TAGGER_INPUTS, TAGGER_OUTPUTS, Repo, sha256, tagger_entry, tagger_model

Errors = Callable[..., list[ConfigError]]
MODEL = "experiments/demo/models/tagger.onnx"


def messages(errors: list[ConfigError]) -> list[tuple[str, str]]:
    """(field path, message) of each error; every error must be located in the deployment file."""
    for e in errors:
        assert e.location.file.endswith("experiments/demo/tagger.yaml"), e
        assert e.location.line > 0, e
    return [(e.path, e.message) for e in errors]


def with_input(index: int, **changes: object) -> list[dict[str, object]]:
    inputs = copy.deepcopy(TAGGER_INPUTS)
    inputs[index].update(changes)
    return inputs


def test_a_correct_declaration_passes_and_the_graph_is_checked(
    repo: Repo, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes)])
    result = run_build()
    assert [(m.name, m.graph) for m in result.models] == [("tagger", "checked")]


def test_graph_reading(tmp_path: Path, tagger_bytes: bytes) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(tagger_bytes)
    g = read_graph(path)
    assert [(t.name, t.dtype, t.dims) for t in g.inputs] == [
        ("points", "FP32", ("batch", "n", 3)),
        ("ids", "INT64", ("batch", 4)),
    ]  # the initializers (weights) are not inputs
    assert [(t.name, t.dtype, t.dims) for t in g.outputs] == [
        ("score", "FP32", ("batch", 2)),
        ("total", "INT64", ("batch", 1)),
    ]


def test_wrong_input_name(repo: Repo, tagger_bytes: bytes, build_errors: Errors) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, inputs=with_input(0, name="pointz"))])
    assert messages(build_errors()) == [
        (
            "models[0].inputs",
            "model 'tagger': the ONNX graph in models/tagger.onnx has input 'points' (FP32 [batch, n, 3]) "
            "that the config does not list: Triton would refuse to load the model",
        ),
        (
            "models[0].inputs[0]",
            "model 'tagger': input 'pointz' is not an input of the ONNX graph in models/tagger.onnx "
            "(graph inputs: ids, points)",
        ),
    ]


def test_wrong_dtype(repo: Repo, tagger_bytes: bytes, build_errors: Errors) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, inputs=with_input(1, dtype="INT32"))])
    assert messages(build_errors()) == [
        (
            "models[0].inputs[1].dtype",
            "model 'tagger': input 'ids': declared dtype INT32, the ONNX graph has INT64",
        )
    ]


def test_wrong_dimension(repo: Repo, tagger_bytes: bytes, build_errors: Errors) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, inputs=with_input(0, dims=[-1, 4]))])
    assert messages(build_errors()) == [
        (
            "models[0].inputs[0].dims",
            "model 'tagger': input 'points': declared dims [-1, 4] after the batch dimension, the ONNX graph "
            "has [batch, n, 3]: dimension 2 is 4 in the config but 3 in the graph",
        )
    ]


def test_wrong_rank(repo: Repo, tagger_bytes: bytes, build_errors: Errors) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, inputs=with_input(0, dims=[3]))])
    assert messages(build_errors()) == [
        (
            "models[0].inputs[0].dims",
            "model 'tagger': input 'points': declared dims [3] after the batch dimension (rank 2 with the "
            "batch), the ONNX graph has [batch, n, 3] (rank 3)",
        )
    ]


def test_dynamic_declared_where_the_graph_is_fixed(
    repo: Repo, tagger_bytes: bytes, build_errors: Errors
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, inputs=with_input(1, dims=[-1]))])
    assert messages(build_errors()) == [
        (
            "models[0].inputs[1].dims",
            "model 'tagger': input 'ids': declared dims [-1] after the batch dimension, the ONNX graph has "
            "[batch, 4]: dimension 1 is dynamic (-1) in the config but fixed to 4 in the graph",
        )
    ]


def test_missing_max_batch_size_is_diagnosed(repo: Repo, tagger_bytes: bytes, build_errors: Errors) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, maxBatchSize=0, dynamicBatching=None)])
    found = messages(build_errors())
    assert len(found) == 4  # every tensor
    assert found[0] == (
        "models[0].inputs[0].dims",
        "model 'tagger': input 'points': declared dims [-1, 3] (rank 2), the ONNX graph has [batch, n, 3] "
        "(rank 3) (is maxBatchSize missing? the graph's first dimension looks like a batch)",
    )


def test_batching_needs_a_dynamic_first_dimension(repo: Repo, build_errors: Errors) -> None:
    fixed = tagger_model(batch=False)
    repo.write(MODEL, fixed)
    repo.deployment([tagger_entry(fixed)])
    found = messages(build_errors())
    assert found[1] == (
        "models[0].inputs[1].dims",
        "model 'tagger': input 'ids': declared dims [4] after the batch dimension, the ONNX graph has [1, 4]: "
        "with a maximum batch size of 8 the graph's first dimension must be dynamic (the batch); set "
        "maxBatchSize: 0 if the model has no batch dimension",
    )


def test_a_batchless_declaration_fits_a_batchless_graph(
    repo: Repo, run_build: Callable[..., BuildResult]
) -> None:
    fixed = tagger_model(batch=False)
    repo.write(MODEL, fixed)
    inputs = [
        {"name": "points", "dtype": "FP32", "dims": [1, -1, 3]},
        {"name": "ids", "dtype": "INT64", "dims": [1, 4]},
    ]
    outputs = [
        {"name": "score", "dtype": "FP32", "dims": [1, 2]},
        {"name": "total", "dtype": "INT64", "dims": [1, 1]},
    ]
    repo.deployment(
        [tagger_entry(fixed, maxBatchSize=0, dynamicBatching=None, inputs=inputs, outputs=outputs)]
    )
    assert run_build().models[0].graph == "checked"


def test_wrong_output_name_and_undeclared_input(
    repo: Repo, tagger_bytes: bytes, build_errors: Errors
) -> None:
    outputs = copy.deepcopy(TAGGER_OUTPUTS)
    outputs[1]["name"] = "sum"
    repo.write(MODEL, tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes, inputs=TAGGER_INPUTS[:1], outputs=outputs)])
    assert messages(build_errors()) == [
        (
            "models[0].inputs",
            "model 'tagger': the ONNX graph in models/tagger.onnx has input 'ids' (INT64 [batch, 4]) that the "
            "config does not list: Triton would refuse to load the model",
        ),
        (
            "models[0].outputs[1]",
            "model 'tagger': output 'sum' is not an output of the ONNX graph in models/tagger.onnx "
            "(graph outputs: score, total)",
        ),
    ]


def test_an_artifact_that_is_not_onnx(repo: Repo, build_errors: Errors) -> None:
    junk = b"not a model at all"
    repo.write(MODEL, junk)
    repo.deployment([tagger_entry(junk, artifact={"source": "models/tagger.onnx", "sha256": sha256(junk)})])
    ((path, message),) = messages(build_errors())
    assert path == "models[0].artifact.source"
    assert message.startswith("model 'tagger': artifact 'models/tagger.onnx': not a valid ONNX model: ")


@pytest.mark.parametrize(
    ("declared", "graph", "mbs", "problem"),
    [
        ([3], (None, 3), 4, None),  # unknown batch dimension is dynamic
        ([5], ("n",), 0, None),  # a declared size narrows a symbolic dimension
        ([-1], ("n",), 0, None),
        ([2], (3,), 0, "dims [2], the ONNX graph has [3]: dimension 0 is 2 in the config but 3 in the graph"),
    ],
)
def test_dimension_rules(
    declared: list[int], graph: tuple[int | str | None, ...], mbs: int, problem: str | None
) -> None:
    assert dims_problem(declared, graph, mbs) == problem


def test_the_header_is_read_and_the_weights_are_never_parsed(tmp_path: Path, tagger_bytes: bytes) -> None:
    from pipelines.config.modelconfig.onnxcheck import read_onnx

    path = tmp_path / "m.onnx"
    path.write_bytes(tagger_bytes)
    header, graph = read_onnx(path)
    assert header.ir_version > 0 and header.opsets[""] > 0
    # Flip bytes inside the raw weight data: the lengths stay intact, so a reader that skips the
    # weights (as this one does) reads the same interface.
    import onnx

    model = onnx.load_from_string(tagger_bytes)
    raw = model.graph.initializer[0].raw_data
    assert raw and tagger_bytes.count(raw) == 1
    at = tagger_bytes.index(raw)
    path.write_bytes(tagger_bytes[:at] + bytes(b ^ 0xFF for b in raw) + tagger_bytes[at + len(raw) :])
    assert read_onnx(path)[1] == graph


@pytest.mark.parametrize("cut", [1, 10, 100])
def test_a_truncated_model_is_refused(tmp_path: Path, tagger_bytes: bytes, cut: int) -> None:
    from pipelines.config.modelconfig.onnxcheck import OnnxError

    path = tmp_path / "m.onnx"
    path.write_bytes(tagger_bytes[:-cut])
    with pytest.raises(OnnxError, match="not a valid ONNX model"):
        read_graph(path)
