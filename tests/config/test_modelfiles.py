"""``sonic validate`` reads supplied config.pbtxt files and reference .npz files (pipelines.config.modelfiles).

The declarative cases are in the hostile corpus (``rule-config-file-*``, ``rule-reference-*``);
here are the passing near misses and the files a corpus YAML cannot describe: archives that
are not what they claim, object arrays, oversized and damaged files.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import ConfigErrors, load_tree
from pipelines.config import modelfiles as mf

DEPLOYMENT = """\
name: zz-case
experiment: cms
sites:
  uchicago: {namespace: cms-af}
modelRepository:
  nfs: [cms/models]
models:
  - name: tagger
MODEL
checks:
  models:
    - name: tagger
      batchSize: 2
      reference: {inputs: ref/in.npz, outputs: ref/out.npz}
"""
DECLARED = """\
    maxBatchSize: 8
    inputs: [{name: x, dtype: FP32, dims: [4]}, {name: mask, dtype: BOOL, dims: [4], optional: true}]
    outputs: [{name: y, dtype: FP32, dims: [2]}]"""
CONFIG = """\
name: "tagger"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""


@pytest.fixture(autouse=True)
def _in_tree(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(example_tree)  # messages name files relative to the working directory


def place(tree: Path, model: str = DECLARED, inputs: object = None, outputs: object = None) -> Path:
    folder = tree / "experiments" / "cms"
    (folder / "ref").mkdir(exist_ok=True)
    if inputs is None:
        inputs = {"x": np.zeros((2, 4), np.float32)}
    if outputs is None:
        outputs = {"y": np.zeros((2, 2), np.float32)}
    for name, arrays in (("in", inputs), ("out", outputs)):
        target = folder / "ref" / f"{name}.npz"
        if isinstance(arrays, bytes):
            target.write_bytes(arrays)
        else:
            np.savez(target, **arrays)  # type: ignore[arg-type]
    (folder / "zz-case.yaml").write_text(DEPLOYMENT.replace("MODEL", model))
    return folder


def errors(tree: Path) -> list[str]:
    try:
        load_tree(tree)
    except ConfigErrors as exc:
        return [f"{e.path}: {e.message}" for e in exc.errors]
    return []


def test_matching_references_and_an_omitted_optional_input_pass(example_tree: Path) -> None:
    place(example_tree)
    assert errors(example_tree) == []


def test_a_supplied_config_that_fits_passes_and_its_tensors_check_the_references(example_tree: Path) -> None:
    folder = place(example_tree, "    configFile: tagger.pbtxt")
    (folder / "tagger.pbtxt").write_text(CONFIG)
    assert errors(example_tree) == []

    np.savez(folder / "ref" / "in.npz", x=np.zeros((2, 5), np.float32))
    assert errors(example_tree) == [
        "checks.models[0].reference.inputs: experiments/cms/ref/in.npz: model 'tagger': array 'x': "
        "shape [2, 5] does not fit the dims [4] after the batch dimension"
    ]


def test_a_missing_batch_dimension_is_named(example_tree: Path) -> None:
    place(example_tree, inputs={"x": np.zeros((4,), np.float32)})
    (found,) = errors(example_tree)
    assert "shape [4] has no batch dimension: the model batches (maxBatchSize 8)" in found
    assert "the first dimension is the batch, 2 (checks batchSize)" in found


def test_object_arrays_are_refused_without_unpickling(example_tree: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.array([{"a": 1}, None], dtype=object))
    place(example_tree, inputs=buf.getvalue())
    (found,) = errors(example_tree)
    assert "array 'x' holds Python objects, which would need pickle (refused)" in found


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"0" * 100, "is not an .npz file (numpy.savez)"),
        (b"", "is not an .npz file (numpy.savez)"),
    ],
)
def test_files_that_are_not_npz_archives(example_tree: Path, content: bytes, message: str) -> None:
    place(example_tree, inputs=content)
    (found,) = errors(example_tree)
    assert found.startswith("checks.models[0].reference.inputs: experiments/cms/ref/in.npz ")
    assert message in found


def test_an_entry_that_is_not_an_array(example_tree: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "hello")
    place(example_tree, inputs=buf.getvalue())
    (found,) = errors(example_tree)
    assert "entry 'notes.txt' is not an array (numpy.savez writes <name>.npy entries)" in found


def test_a_damaged_array_is_found_from_the_sizes_alone(example_tree: Path) -> None:
    good = io.BytesIO()
    np.save(good, np.zeros((2, 4), np.float32))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", good.getvalue()[:-8])  # the header promises 32 bytes of data, 24 follow
    place(example_tree, inputs=buf.getvalue())
    (found,) = errors(example_tree)
    assert "array 'x' declares" in found and "the file is damaged" in found


def test_an_archive_unpacking_past_the_limit_is_refused_before_any_decompression(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A highly compressed archive: only the sizes in its directory are read, never the data."""
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((2, 4_000_000), np.float32))  # 32 MB of zeros, ~30 kB packed
    assert len(buf.getvalue()) < 100_000
    monkeypatch.setattr(mf, "MAX_REFERENCE_UNPACKED", 16 * 1024 * 1024)
    place(example_tree, inputs=buf.getvalue())
    (found,) = errors(example_tree)
    assert f"unpacks to {2 * 4_000_000 * 4 + 128} bytes, more than the 16777216 allowed" in found


def test_a_reference_file_larger_than_a_configmap_can_carry(example_tree: Path) -> None:
    place(example_tree, inputs={"x": np.zeros((2, 4), np.float32), "pad": np.zeros(300_000, np.float32)})
    (found,) = errors(example_tree)
    assert "bytes, more than the 1048576 bytes allowed" in found


def test_a_named_pipe_is_never_opened(example_tree: Path) -> None:
    folder = place(example_tree)
    (folder / "ref" / "in.npz").unlink()
    os.mkfifo(folder / "ref" / "in.npz")
    (found,) = errors(example_tree)  # returns: a FIFO is not a file, nothing blocks on it
    assert found.startswith("checks.models[0].reference.inputs: file 'ref/in.npz' not found")


def test_a_link_out_of_the_experiment_is_not_read(example_tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.npz"
    np.savez(outside, x=np.zeros((2, 4), np.float32))
    folder = place(example_tree)
    (folder / "ref" / "in.npz").unlink()
    (folder / "ref" / "in.npz").symlink_to(outside)
    (found,) = errors(example_tree)
    assert "points outside experiments/cms/" in found


def test_a_supplied_config_that_is_not_utf8(example_tree: Path) -> None:
    folder = place(example_tree, "    configFile: tagger.pbtxt")
    (folder / "tagger.pbtxt").write_bytes(b'name: "tagger\xff"\n')
    (found,) = errors(example_tree)
    assert found.startswith("models[0].configFile: experiments/cms/tagger.pbtxt is not UTF-8 text")


def test_reading_is_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    assert mf.read_bounded(big, 11) == b"x" * 11
    with pytest.raises(mf.FileProblem, match="is 11 bytes, more than the 10 bytes allowed"):
        mf.read_bounded(big, 10)
    with pytest.raises(mf.FileProblem, match="is not a regular file"):
        mf.read_bounded(tmp_path, 10)


# --- ONNX artifacts against the image's ONNX Runtime ---------------------------------------------

ONNX_DEPLOYMENT = """\
name: zz-case
experiment: cms
sites:
  uchicago: {namespace: cms-af}
triton: {image: IMAGE}
models:
  - name: tagger
    artifact: {source: models/zz/model.onnx, sha256: SHA}
    maxBatchSize: 8
    inputs: [{name: x, dtype: FP32, dims: [4]}]
    outputs: [{name: y, dtype: FP32, dims: [4]}]
"""


def onnx_model(tree: Path, opset: int, ir: int, image: str = "nvcr.io/nvidia/tritonserver:24.08-py3") -> None:
    import hashlib

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    target = tree / "experiments" / "cms" / "models" / "zz" / "model.onnx"
    target.parent.mkdir(parents=True)
    data = model.SerializeToString()
    target.write_bytes(data)
    text = ONNX_DEPLOYMENT.replace("IMAGE", image).replace("SHA", hashlib.sha256(data).hexdigest())
    (tree / "experiments" / "cms" / "zz-case.yaml").write_text(text)
    assert onnx  # imported for the helper module


def test_an_opset_the_images_onnx_runtime_reads_passes(example_tree: Path) -> None:
    onnx_model(example_tree, opset=21, ir=10)  # Triton 24.08: ONNX Runtime 1.18.1 (ONNX 1.16)
    assert errors(example_tree) == []


def test_a_newer_opset_and_ir_version_than_the_image_reads(example_tree: Path) -> None:
    onnx_model(example_tree, opset=22, ir=11)
    assert errors(example_tree) == [
        "models[0].artifact.source: model 'tagger': experiments/cms/models/zz/model.onnx needs a newer ONNX "
        "Runtime than the one in 'nvcr.io/nvidia/tritonserver:24.08-py3' (Triton 24.08: ONNX Runtime 1.18.1, "
        "at site 'uchicago'): IR version 11 (it reads up to 10), ai.onnx opset 22 (it reads up to 21); export "
        "the model for an older opset/IR version (e.g. torch.onnx.export(..., opset_version=N)) or use a newer "
        "Triton image"
    ]


def test_an_image_the_table_does_not_know_is_a_warning_naming_the_table(example_tree: Path) -> None:
    from click.testing import CliRunner

    from pipelines.cli import cli

    onnx_model(example_tree, opset=22, ir=11, image="nvcr.io/nvidia/tritonserver:26.04-py3")
    assert errors(example_tree) == []
    result = CliRunner().invoke(cli, ["validate"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if "warning:" in line]
    assert warning.startswith("experiments/cms/zz-case.yaml:8:")
    assert (
        "models[0].artifact.source: warning: cannot tell which ONNX Runtime the Triton image "
        "'nvcr.io/nvidia/tritonserver:26.04-py3' (at site 'uchicago') ships: it is not in the table of "
        "Triton releases (pipelines/config/modelconfig/onnxruntime_versions.py)" in warning
    )
    body = CliRunner().invoke(cli, ["validate", "--format", "json"], catch_exceptions=False).stdout
    import json

    assert [w["path"] for w in json.loads(body)["warnings"]] == ["models[0].artifact.source"]
