"""config.pbtxt generation (protobuf text format) and parsing of supplied files."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigErrors
from pipelines.config.model import Model
from pipelines.config.modelconfig import pbtxt


def model(**overrides: object) -> Model:
    raw: dict[str, object] = {
        "name": "tagger",
        "platform": "onnxruntime_onnx",
        "versions": [2, 1],
        "maxBatchSize": 8,
        "inputs": [
            {"name": "points", "dtype": "FP32", "dims": [-1, 3], "optional": False},
            {"name": "mask", "dtype": "BOOL", "dims": [5], "optional": True},
        ],
        "outputs": [{"name": "score", "dtype": "FP32", "dims": [2], "optional": False}],
        "dynamicBatching": {"preferredBatchSize": [2, 4], "maxQueueDelay": 0.00025},
        "instances": {"kind": "GPU", "count": 2},
    }
    raw.update(overrides)
    return Model.model_validate(raw)


def test_generated_config_says_what_was_declared() -> None:
    cfg = pbtxt.generate(model())
    assert cfg.name == "tagger" and cfg.platform == "onnxruntime_onnx" and not cfg.backend
    assert cfg.max_batch_size == 8
    assert list(cfg.version_policy.specific.versions) == [1, 2]
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in cfg.input] == [
        ("points", mc.TYPE_FP32, [-1, 3], False),
        ("mask", mc.TYPE_BOOL, [5], True),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.output] == [("score", mc.TYPE_FP32, [2])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    assert not cfg.default_model_filename  # model.onnx is the platform's default


def test_text_is_canonical_and_parses_back_to_the_same_message() -> None:
    text = pbtxt.to_text(pbtxt.generate(model()))
    assert text == pbtxt.to_text(pbtxt.generate(model()))
    assert text.startswith(pbtxt.HEADER)
    assert pbtxt.parse(text, "x/config.pbtxt") == pbtxt.generate(model())
    assert 'platform: "onnxruntime_onnx"' in text and "kind: KIND_GPU" in text


def test_python_backend_and_custom_filename() -> None:
    cfg = pbtxt.generate(
        model(platform="python", artifact={"source": "m/run.py", "sha256": "0" * 64, "filename": "run.py"})
    )
    assert cfg.backend == "python" and not cfg.platform
    assert cfg.default_model_filename == "run.py"


def test_a_tensor_name_cannot_inject_configuration() -> None:
    evil = 'x" } input { name: "y'
    cfg = pbtxt.generate(model(inputs=[{"name": evil, "dtype": "FP32", "dims": [1], "optional": False}]))
    back = pbtxt.parse(pbtxt.to_text(cfg), "config.pbtxt")
    assert [t.name for t in back.input] == [evil]


def test_parse_error_is_located_at_file_line_and_column() -> None:
    text = 'name: "m"\nmax_batch_size: 4\ninput [ { name: "a" data_type: TYPE_FP33 dims: [1] } ]\n'
    with pytest.raises(ConfigErrors) as info:
        pbtxt.parse(text, "experiments/demo/configs/m.pbtxt")
    (e,) = info.value.errors
    assert str(e) == (
        "experiments/demo/configs/m.pbtxt:3:32: config.pbtxt: not a valid Triton model config: "
        'Enum type "inference.DataType" has no value named TYPE_FP33.'
    )


def test_unknown_field_is_an_error_too() -> None:
    with pytest.raises(ConfigErrors) as info:
        pbtxt.parse('name: "m"\nmax_batch: 4\n', "c.pbtxt")
    (e,) = info.value.errors
    assert (e.location.line, e.location.col) == (2, 1)
    assert "max_batch" in e.message


def test_platform_of_accepts_backend_spelling() -> None:
    assert (
        pbtxt.platform_of(text_format.Parse('backend: "onnxruntime"', mc.ModelConfig())) == "onnxruntime_onnx"
    )
    assert (
        pbtxt.platform_of(text_format.Parse('platform: "tensorrt_plan"', mc.ModelConfig())) == "tensorrt_plan"
    )
