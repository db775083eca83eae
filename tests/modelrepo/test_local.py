"""The --local variant: ONNX models wrapped for the Python backend, everything else about them unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.modelconfig import pbtxt
from pipelines.modelrepo.build import BuildResult
from pipelines.modelrepo.local import template_bytes
from tests.modelrepo.support import Repo, blob_entry, tagger_entry, tree_files


def test_local_variant_layout_and_config(
    repo: Repo, dest: Path, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    blob = os.urandom(1000)
    repo.write("experiments/demo/models/tagger.onnx", tagger_bytes)
    repo.write("experiments/demo/models/blob.pt", blob)
    repo.deployment(
        [
            tagger_entry(tagger_bytes, versions=[1, 3], instances={"kind": "GPU", "count": 2}),
            blob_entry(blob),
        ],
        triton={"gpu": {"class": "T4"}, "resources": {"cpu": "1"}},
    )
    result = run_build(local=True)
    assert result.local_snapshot is not None and result.snapshot is not None
    assert result.local_snapshot.parent == dest / "local" / "snapshots"
    assert result.local_skipped == (
        ("blob", "platform pytorch_libtorch cannot run on the bundled CPU Triton (Python backend only)"),
    )
    assert sorted(tree_files(result.local_snapshot)) == [
        "tagger/1/model.onnx",
        "tagger/1/model.py",
        "tagger/3/model.onnx",
        "tagger/3/model.py",
        "tagger/config.pbtxt",
    ]
    assert (result.local_snapshot / "tagger" / "1" / "model.py").read_bytes() == template_bytes()
    local = pbtxt.parse((result.local_snapshot / "tagger" / "config.pbtxt").read_text(), "local")
    cluster = pbtxt.parse((result.snapshot / "tagger" / "config.pbtxt").read_text(), "cluster")
    assert (local.backend, local.platform) == ("python", "")
    assert local.parameters["onnx_file"].string_value == "model.onnx"
    assert [(g.kind, g.count) for g in local.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]
    # Same name, tensors, versions and batching as the cluster's config.
    for field in ("name", "max_batch_size", "input", "output", "dynamic_batching", "version_policy"):
        assert getattr(local, field) == getattr(cluster, field), field


def test_local_digest_is_stable_and_content_addressed(
    repo: Repo, tmp_path: Path, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    repo.write("experiments/demo/models/tagger.onnx", tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes)])
    one = run_build(local=True)
    two = run_build(local=True, dest=tmp_path / "other")
    assert one.local_snapshot is not None and two.local_snapshot is not None
    assert one.local_snapshot.name == two.local_snapshot.name
    assert not run_build(local=True).local_created
    repo.deployment([tagger_entry(tagger_bytes, dynamicBatching={"preferredBatchSize": [2]})])
    three = run_build(local=True)
    assert three.local_snapshot is not None and three.local_snapshot.name != one.local_snapshot.name
