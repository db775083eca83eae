"""Supplied config.pbtxt files: parsed, compared with the declaration, the sites and the ONNX graph."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.config.errors import ConfigError
from pipelines.modelrepo.build import BuildResult
from tests.modelrepo.support import Repo, sha256, tagger_entry

Errors = Callable[..., list[ConfigError]]
MODEL = "experiments/demo/models/tagger.onnx"
CONFIG = "experiments/demo/configs/tagger.pbtxt"
GOOD = """\
name: "tagger"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "points" data_type: TYPE_FP32 dims: [ -1, 3 ] },
  { name: "ids" data_type: TYPE_INT64 dims: [ 4 ] }
]
output [
  { name: "score" data_type: TYPE_FP32 dims: [ 2 ] },
  { name: "total" data_type: TYPE_INT64 dims: [ 1 ] }
]
dynamic_batching { preferred_batch_size: [ 4 ] }
instance_group [ { kind: KIND_GPU count: 1 } ]
"""
ON_T4 = {"gpu": {"class": "T4"}, "resources": {"cpu": "1"}}


def supplied(model: bytes, **overrides: Any) -> dict[str, Any]:
    """A model entry that leaves tensors, batching and instances to the supplied config."""
    base: dict[str, Any] = {"inputs": None, "outputs": None, "maxBatchSize": None, "dynamicBatching": None}
    return tagger_entry(model, configFile="configs/tagger.pbtxt", instances=None, **{**base, **overrides})


def located(errors: list[ConfigError]) -> list[tuple[str, int, str, str]]:
    """(file suffix, line, field, message) of each error."""
    return [
        (e.location.file.rsplit("experiments/", 1)[1], e.location.line, e.path, e.message) for e in errors
    ]


def test_a_valid_supplied_config_is_published_verbatim(
    repo: Repo, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.write(CONFIG, GOOD)
    repo.deployment([supplied(tagger_bytes)], triton=ON_T4)
    result = run_build()
    assert result.models[0].config.startswith("supplied ") and result.models[0].graph == "checked"
    assert result.snapshot is not None and result.lock is not None
    assert (result.snapshot / "tagger" / "config.pbtxt").read_text() == GOOD
    assert result.lock.models[0].config_sha256 == sha256(GOOD.encode())


def test_syntax_error_is_located_in_the_config_file(
    repo: Repo, tagger_bytes: bytes, build_errors: Errors
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.write(CONFIG, GOOD.replace("dims: [ 4 ] }", "dims: [ 4 ] ] }"))
    repo.deployment([supplied(tagger_bytes)], triton=ON_T4)
    assert located(build_errors()) == [
        (
            "demo/configs/tagger.pbtxt",
            6,
            "config.pbtxt",
            "not a valid Triton model config: Expected identifier or number, got ].",
        )
    ]


def test_gpu_instances_need_a_gpu_and_batch_sizes_their_maximum(
    repo: Repo, tagger_bytes: bytes, build_errors: Errors
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.write(CONFIG, GOOD.replace("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 4, 16 ]"))
    repo.deployment([supplied(tagger_bytes)])  # no triton.gpu
    assert located(build_errors()) == [
        (
            "demo/configs/tagger.pbtxt",
            12,
            "preferred_batch_size[1]",
            "model 'tagger': preferred batch size 16 is above the maximum batch size 8",
        ),
        (
            "demo/configs/tagger.pbtxt",
            13,
            "instances",
            "model 'tagger': instance kind GPU needs a GPU, but at site 'lab' the deployment has no triton.gpu",
        ),
    ]


def test_gpu_class_must_be_offered_by_the_site(repo: Repo, tagger_bytes: bytes, build_errors: Errors) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.write(CONFIG, GOOD)
    repo.deployment([supplied(tagger_bytes)], triton={"gpu": {"class": "V100"}, "resources": {"cpu": "1"}})
    assert located(build_errors()) == [
        (
            "demo/configs/tagger.pbtxt",
            13,
            "instances",
            "model 'tagger': instance kind GPU at site 'lab': GPU class 'V100' is not offered by the site "
            "(it offers: T4)",
        )
    ]


def test_supplied_config_is_checked_against_graph_and_declaration(
    repo: Repo, tagger_bytes: bytes, build_errors: Errors
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.write(CONFIG, GOOD.replace("[ -1, 3 ]", "[ -1, 4 ]"))
    repo.deployment(
        [tagger_entry(tagger_bytes, configFile="configs/tagger.pbtxt", instances=None)], triton=ON_T4
    )
    found = located(build_errors())
    assert found[0] == (
        "demo/configs/tagger.pbtxt",
        5,
        "input[0].dims",
        "model 'tagger': input 'points': config.pbtxt has dims [-1, 4] after the batch dimension, the ONNX "
        "graph has [batch, n, 3]: dimension 2 is 4 in the config but 3 in the graph",
    )
    file, _line, path, message = found[1]
    assert (file, path) == ("demo/tagger.yaml", "models[0].inputs[0].dims")
    assert message.startswith("model 'tagger': input 'points': declared dims [-1, 3] but ")
    assert message.endswith("experiments/demo/configs/tagger.pbtxt has [-1, 4]")
    assert len(found) == 2


def test_artifact_filename_must_be_what_triton_looks_for(
    repo: Repo, tagger_bytes: bytes, build_errors: Errors
) -> None:
    repo.write(MODEL, tagger_bytes)
    repo.write(CONFIG, GOOD)
    artifact = {"source": "models/tagger.onnx", "sha256": sha256(tagger_bytes), "filename": "tagger.onnx"}
    repo.deployment([supplied(tagger_bytes, artifact=artifact)], triton=ON_T4)
    ((file, _line, path, message),) = located(build_errors())
    assert (file, path) == ("demo/tagger.yaml", "models[0].artifact.filename")
    assert message == (
        "model 'tagger': artifact.filename is 'tagger.onnx' but Triton will look for 'model.onnx' "
        "(default_model_filename or the platform's default)"
    )
