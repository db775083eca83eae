"""In-place repositories: CVMFS verified when mounted, everything else reported as not verifiable here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines.config.errors import ConfigError
from pipelines.modelrepo.build import BuildResult
from tests.modelrepo.support import Repo

CVMFS = "/cvmfs/demo.example.org/models"
CONFIG = """\
name: "cnn"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def declared(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "cnn",
        "versions": [1, 2],
        "maxBatchSize": 4,
        "inputs": [{"name": "x", "dtype": "FP32", "dims": [3]}],
        "outputs": [{"name": "y", "dtype": "FP32", "dims": [1]}],
    }
    entry.update(overrides)
    return entry


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    """A directory standing for the machine's root under which /cvmfs/... is 'mounted'."""
    root = tmp_path / "mnt"
    models = root / CVMFS.lstrip("/")
    (models / "cnn" / "1").mkdir(parents=True)
    (models / "cnn" / "2").mkdir()
    (models / "cnn" / "config.pbtxt").write_text(CONFIG)
    (models / "other").mkdir()
    (models / "other" / "config.pbtxt").write_text('name: "other"\nbackend: "python"\n')
    return root


def test_not_mounted_is_not_an_error(repo: Repo, run_build: Callable[..., BuildResult]) -> None:
    repo.deployment([declared()], modelRepository={"cvmfs": [CVMFS]})
    result = run_build()
    assert [(s.kind, s.location, s.verified, s.detail) for s in result.in_place] == [
        ("cvmfs", CVMFS, False, "not verifiable here (not mounted)")
    ]
    assert result.lock is None and result.lock_status == "none"


def test_pvc_nfs_and_baked_are_reported_not_verifiable(
    repo: Repo, run_build: Callable[..., BuildResult]
) -> None:
    repo.deployment([declared()], modelRepository={"baked": ["/opt/models"]})
    (status,) = run_build().in_place
    assert (status.kind, status.verified) == ("baked", False)
    assert status.detail == "not verifiable here (inside the image; checked live)"


def test_mounted_and_consistent(repo: Repo, mount: Path, run_build: Callable[..., BuildResult]) -> None:
    repo.deployment([declared()], modelRepository={"cvmfs": [CVMFS]})
    result = run_build(cvmfs_root=mount)
    assert [(s.verified, s.detail) for s in result.in_place] == [(True, "2 model configs parsed")]
    assert [(m.name, m.kind) for m in result.models] == [("cnn", "in-place")]


def test_mounted_with_problems(
    repo: Repo, mount: Path, build_errors: Callable[..., list[ConfigError]]
) -> None:
    models = mount / CVMFS.lstrip("/")
    (models / "cnn" / "2").rmdir()
    (models / "other" / "config.pbtxt").write_text(
        'name: "other"\nbackend: "python"\ninput [ { name: "a" ]\n'
    )
    (models / "renamed").mkdir()
    (models / "renamed" / "config.pbtxt").write_text('name: "not_renamed"\n')
    repo.deployment(
        [declared(inputs=[{"name": "x", "dtype": "FP16", "dims": [3]}]), declared(name="missing")],
        modelRepository={"cvmfs": [CVMFS]},
    )
    got = sorted(
        (Path(e.location.file).parent.name, e.location.line, e.path, e.message)
        for e in build_errors(cvmfs_root=mount)
    )
    cnn = models / "cnn"
    assert got == [
        (
            "demo",
            repo.line("models", 0, "versions"),
            "models[0].versions",
            f"model 'cnn': version 2 is declared but {cnn} has no directory 2 (versions there: 1)",
        ),
        (
            "demo",
            repo.line("models", 0, "inputs", 0, "dtype"),
            "models[0].inputs[0].dtype",
            f"model 'cnn': input 'x': declared dtype FP16 but {cnn / 'config.pbtxt'} has FP32",
        ),
        (
            "demo",
            repo.line("models", 1, "name"),
            "models[1].name",
            f"model 'missing': not found in any in-place repository (looked in {CVMFS})",
        ),
        (
            "other",
            3,
            "config.pbtxt",
            "not a valid Triton model config: Expected identifier or number, got ].",
        ),
        (
            "renamed",
            1,
            "name",
            "config names the model 'not_renamed' but it is in directory 'renamed': Triton refuses it",
        ),
    ]
