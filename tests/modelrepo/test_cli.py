"""``sonic build-models`` as a user meets it, on a copy of the example tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.modelrepo.snapshot import list_snapshots

LOCK = "experiments/cms/locks/minimal.repository.lock.json"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["build-models", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_minimal_example_builds_and_matches_the_committed_lock(
    example_tree: Path, fixture_root: Path, tmp_path: Path
) -> None:
    (example_tree / LOCK).unlink(missing_ok=True)
    code, out, err = run("minimal", "--root", str(example_tree), "--dest", str(tmp_path / "store"), "--local")
    assert code == 0, out + err
    assert out.splitlines()[-1].endswith("minimal.repository.lock.json (written)")
    built = (example_tree / LOCK).read_text()
    # The lock committed in the fixture tree is exactly what a build produces (it is not stale).
    assert built == (fixture_root / LOCK).read_text()
    digest = json.loads(built)["snapshot"]
    assert list_snapshots(tmp_path / "store") == [digest]
    assert len(list_snapshots(tmp_path / "store" / "local")) == 1

    code, out, _ = run("cms/minimal", "--root", str(example_tree), "--dest", str(tmp_path / "store"))
    assert code == 0 and "unchanged, nothing copied" in out and "(unchanged)" in out


def test_json_report(example_tree: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        str(example_tree / "experiments/cms/minimal.yaml"), "--root", str(example_tree),
        "--dest", str(tmp_path / "s"), "--format", "json",
    )  # fmt: skip
    assert code == 0
    report = json.loads(out)
    # The tree's copy of the committed lock is already what this build produces.
    assert report["ok"] and report["deployment"] == "minimal" and report["lock"] == "unchanged"
    assert report["models"][0]["graph"] == "checked" and report["models"][0]["sha256"].startswith("357317f8")


def test_dry_run_writes_nothing(example_tree: Path, tmp_path: Path) -> None:
    (example_tree / LOCK).unlink(missing_ok=True)
    code, out, _ = run("minimal", "--root", str(example_tree), "--dest", str(tmp_path / "s"), "--dry-run")
    assert code == 0 and "dry run: all checks passed" in out and "nothing published" in out
    assert not (example_tree / LOCK).exists() and list_snapshots(tmp_path / "s") == []


def test_cvmfs_only_deployment_builds_nothing(example_tree: Path, tmp_path: Path) -> None:
    code, out, _ = run("particlenet", "--root", str(example_tree), "--dest", str(tmp_path / "s"))
    assert code == 0
    assert "not verifiable here (not mounted)" in out
    assert "no artifact models: nothing to build; no lock written" in out
    assert not (example_tree / "experiments/cms/locks/particlenet.repository.lock.json").exists()


def test_tampered_artifact_exits_1_with_a_located_message(example_tree: Path, tmp_path: Path) -> None:
    model = example_tree / "experiments/cms/models/btag_mini/model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 0x01
    model.write_bytes(bytes(data))
    (example_tree / LOCK).unlink(missing_ok=True)
    code, out, err = run("minimal", "--root", str(example_tree), "--dest", str(tmp_path / "s"))
    assert code == 1
    assert "minimal.yaml:" in out and "models[0].artifact.source: model 'btag_mini'" in out
    assert "sha256 mismatch" in out and "nothing was published" in out
    assert "Traceback" not in out + err
    assert list_snapshots(tmp_path / "s") == [] and not (example_tree / LOCK).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "'nope' is not a deployment"),
        (["minimal", "--site", "geddes"], "does not run at site 'geddes' (it runs at: uchicago)"),
        (["minimal", "--max-size", "12 parsecs"], "is not a size"),
    ],
)
def test_usage_errors_exit_2(example_tree: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run(*args, "--root", str(example_tree), "--dest", str(tmp_path / "s"))
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in out + err


def test_default_destination_is_ignored_by_git(example_tree: Path) -> None:
    code, _, _ = run("minimal", "--root", str(example_tree), "--dry-run")
    assert code == 0
    assert (example_tree / ".sonic" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (example_tree / ".sonic" / "models" / "cache").is_dir()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_digests_do_not_depend_on_where_the_tree_or_the_store_lies(
    example_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes at another absolute path (tree, store and working directory) give the same digests."""
    import shutil

    other = tmp_path / "elsewhere" / "much" / "deeper" / "checkout"
    shutil.copytree(example_tree, other)
    results = []
    for tree, store, cwd in (
        (example_tree, tmp_path / "store-a", example_tree),
        (other, tmp_path / "b" / "store", tmp_path),
    ):
        (tree / LOCK).unlink(missing_ok=True)
        monkeypatch.chdir(cwd)
        code, out, err = run("minimal", "--root", str(tree), "--dest", str(store), "--local")
        assert code == 0, out + err
        (snapshot,) = list_snapshots(store)
        (local,) = list_snapshots(store / "local")
        results.append(
            (
                (tree / LOCK).read_bytes(),
                snapshot,
                local,
                _files(store / "snapshots" / snapshot),
                _files(store / "local" / "snapshots" / local),
            )
        )
    assert results[0] == results[1]
