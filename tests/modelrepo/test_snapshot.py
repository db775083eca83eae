"""Snapshots: content-addressed, atomic, reused when nothing changed, intact across crashes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.modelrepo.build import BuildOptions, BuildResult, build
from pipelines.modelrepo.lock import lock_path, read_lock
from pipelines.modelrepo.snapshot import SnapshotError, StoreBusy, list_snapshots, store_lock
from tests.conftest import ROOT
from tests.modelrepo.support import Repo, blob_entry, sha256, tagger_entry, tree_files

Build = Callable[..., BuildResult]
MiB = 1024 * 1024


def two_models(repo: Repo, tagger: bytes, blob: bytes, preferred: int = 4, order: int = 1) -> None:
    repo.write("experiments/demo/models/tagger.onnx", tagger)
    repo.write("experiments/demo/models/blob.pt", blob)
    models = [tagger_entry(tagger, dynamicBatching={"preferredBatchSize": [preferred]}), blob_entry(blob)]
    repo.deployment(models[::order])


def test_identical_inputs_give_the_identical_digest(
    tmp_path: Path, tagger_bytes: bytes, run_build: Build
) -> None:
    blob = os.urandom(100_000)
    digests = []
    for n, order in ((1, 1), (2, -1)):  # another checkout, another store, models declared in another order
        repo = Repo(tmp_path / f"repo{n}")
        two_models(repo, tagger_bytes, blob, order=order)
        tree, deployment = repo.load()
        result = build(tree, deployment, BuildOptions(dest=tmp_path / f"store{n}"))
        assert result.lock is not None
        digests.append(result.lock.snapshot)
        assert lock_path(deployment.source, "tagger").read_bytes() == (result.lock.to_json()).encode()
    assert digests[0] == digests[1]


def test_a_rebuild_with_nothing_changed_copies_nothing(
    repo: Repo, dest: Path, tagger_bytes: bytes, run_build: Build
) -> None:
    two_models(repo, tagger_bytes, os.urandom(300_000))
    first = run_build(local=True)
    assert first.snapshot_created and first.local_created and first.lock_status == "written"
    assert sum(m.transferred for m in first.models) == len(tagger_bytes) + 300_000
    assert first.snapshot is not None and first.local_snapshot is not None
    lock_file = first.lock_file
    before = (first.snapshot.stat().st_mtime_ns, lock_file.stat().st_mtime_ns, tree_files(first.snapshot))

    second = run_build(local=True)
    assert second.lock == first.lock and second.snapshot == first.snapshot
    assert not second.snapshot_created and not second.local_created and second.copied == 0
    assert [m.transferred for m in second.models] == [0, 0]
    assert second.lock_status == "unchanged"
    assert (
        first.snapshot.stat().st_mtime_ns,
        lock_file.stat().st_mtime_ns,
        tree_files(first.snapshot),
    ) == before


def test_a_config_change_is_a_new_snapshot_reusing_the_verified_bytes(
    repo: Repo, dest: Path, tagger_bytes: bytes, run_build: Build
) -> None:
    blob = os.urandom(50_000)
    two_models(repo, tagger_bytes, blob)
    first = run_build()
    two_models(repo, tagger_bytes, blob, preferred=2)
    second = run_build()
    assert first.lock is not None and second.lock is not None
    assert second.lock.snapshot != first.lock.snapshot
    assert [m.transferred for m in second.models] == [0, 0] and second.copied == 0
    assert list_snapshots(dest) == sorted([first.lock.snapshot, second.lock.snapshot])
    assert second.snapshot is not None
    artifact = second.snapshot / "blob" / "1" / "model.pt"
    assert artifact.stat().st_ino == (dest / "cache" / "sha256" / sha256(blob)).stat().st_ino  # hard link
    assert read_lock(repo.root / "experiments/demo/tagger.yaml", "tagger") == second.lock


def test_the_snapshot_layout(repo: Repo, tagger_bytes: bytes, run_build: Build) -> None:
    two_models(repo, tagger_bytes, b"torchscript")
    result = run_build()
    assert result.snapshot is not None and result.lock is not None
    assert sorted(tree_files(result.snapshot)) == [
        "blob/1/model.pt",
        "blob/config.pbtxt",
        "tagger/1/model.onnx",
        "tagger/config.pbtxt",
    ]
    assert result.lock.snapshot == result.lock.content_digest()
    assert [m.name for m in result.lock.models] == ["blob", "tagger"]
    config = (result.snapshot / "tagger" / "config.pbtxt").read_bytes()
    assert result.lock.models[1].config_sha256 == hashlib.sha256(config).hexdigest()


def test_a_modified_published_snapshot_is_reported_not_served(
    repo: Repo, tagger_bytes: bytes, run_build: Build
) -> None:
    two_models(repo, tagger_bytes, b"torchscript")
    result = run_build()
    assert result.snapshot is not None
    victim = result.snapshot / "tagger" / "config.pbtxt"
    victim.chmod(0o644)
    victim.write_text(victim.read_text() + "\n# edited\n")
    with pytest.raises(SnapshotError, match="was modified after it was published; it is not used") as info:
        run_build()
    assert [m.path for m in info.value.mismatches] == ["tagger/config.pbtxt"]


def test_dry_run_publishes_nothing_and_names_the_digest(
    repo: Repo, dest: Path, tagger_bytes: bytes, run_build: Build
) -> None:
    two_models(repo, tagger_bytes, b"torchscript")
    dry = run_build(dry_run=True)
    assert dry.lock is not None and dry.snapshot is None and dry.lock_status == "dry run"
    assert list_snapshots(dest) == [] and not dry.lock_file.exists()
    assert list((dest / "cache" / "sha256").iterdir()) == []  # local files are hashed in place
    real = run_build()
    assert real.lock == dry.lock


def test_store_lock_serialises_builds(tmp_path: Path) -> None:
    with store_lock(tmp_path), pytest.raises(StoreBusy), store_lock(tmp_path, timeout=0.2):
        pass


# --- crashes ---------------------------------------------------------------------------------------


def _verified_cache(dest: Path) -> None:
    for blob in (dest / "cache" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, (
            f"unverified bytes in the cache: {blob}"
        )


def _visible(store: Path) -> list[str]:
    return list_snapshots(store)


@pytest.mark.parametrize(
    ("event", "nth"),
    [
        ("bytes", 3 * MiB),  # while copying an artifact into the cache
        ("link", 1),  # assembling the snapshot, first file
        ("link", 3),  # assembling the snapshot, midway
        ("publish", 1),  # right before the snapshot's rename
        ("publish", 2),  # right before the local variant's rename (the snapshot is out)
        ("lock", 1),  # right before the lock file is written
    ],
)
def test_sigkill_leaves_earlier_snapshots_intact_and_no_partial_one(
    repo: Repo, dest: Path, tagger_bytes: bytes, run_build: Build, event: str, nth: int
) -> None:
    two_models(repo, tagger_bytes, os.urandom(MiB))
    earlier = run_build(local=True)
    assert earlier.snapshot is not None and earlier.lock is not None
    earlier_files = tree_files(earlier.snapshot)
    earlier_lock = earlier.lock_file.read_bytes()

    two_models(repo, tagger_bytes, os.urandom(8 * MiB), preferred=2)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.modelrepo.kill_build",
            str(repo.root),
            "tagger",
            str(dest),
            event,
            str(nth),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr

    published_before_kill = event in ("lock",) or (event, nth) == ("publish", 2)
    visible = _visible(dest)
    assert earlier.lock.snapshot in visible
    assert len(visible) == (2 if published_before_kill else 1)
    assert tree_files(earlier.snapshot) == earlier_files
    assert earlier.lock_file.read_bytes() == earlier_lock  # the lock still names a complete snapshot
    _verified_cache(dest)

    # The next build cleans up after the crash and completes.
    result = run_build(local=True)
    assert result.lock is not None and result.snapshot is not None
    assert not [p for p in (dest / "snapshots").iterdir() if p.name.startswith(".")]
    assert not [p for p in (dest / "local" / "snapshots").iterdir() if p.name.startswith(".")]
    assert list((dest / "cache" / "tmp").iterdir()) == []
    assert sorted(_visible(dest)) == sorted({earlier.lock.snapshot, result.lock.snapshot})
    assert sorted(tree_files(result.snapshot)) == sorted(earlier_files)
    assert read_lock(repo.root / "experiments/demo/tagger.yaml", "tagger") == result.lock
    assert tree_files(earlier.snapshot) == earlier_files


def test_sigkill_from_outside_during_the_copy(
    repo: Repo, dest: Path, tagger_bytes: bytes, run_build: Build
) -> None:
    two_models(repo, tagger_bytes, os.urandom(MiB))
    earlier = run_build()
    assert earlier.snapshot is not None and earlier.lock is not None
    earlier_files = tree_files(earlier.snapshot)
    two_models(repo, tagger_bytes, os.urandom(16 * MiB), preferred=2)
    # The build stops itself after 2 MiB of the 16 MiB copy and says so: the kill lands mid-copy.
    paused = dest.parent / "paused"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.modelrepo.kill_build",
            str(repo.root),
            "tagger",
            str(dest),
            "pause",
            str(2 * MiB),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "SONIC_TEST_PAUSE_FILE": str(paused)},
    )
    try:
        give_up = time.monotonic() + 120
        while not paused.exists() and proc.poll() is None:
            assert time.monotonic() < give_up, "the build never reached the copy"
            time.sleep(0.01)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert any((dest / "cache" / "tmp").glob("copy-*")), (
            "a partial copy must exist when the build is killed"
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _visible(dest) == [earlier.lock.snapshot]
    assert tree_files(earlier.snapshot) == earlier_files
    _verified_cache(dest)
    result = run_build()
    assert result.snapshot is not None and list((dest / "cache" / "tmp").iterdir()) == []


def test_no_models_with_artifacts_means_no_lock(repo: Repo, dest: Path, run_build: Build) -> None:
    in_place = {
        "name": "cnn",
        "platform": "tensorflow_savedmodel",
        "maxBatchSize": 4,
        "inputs": [{"name": "x", "dtype": "FP32", "dims": [3]}],
        "outputs": [{"name": "y", "dtype": "FP32", "dims": [1]}],
    }
    repo.deployment([in_place], modelRepository={"cvmfs": ["/cvmfs/demo.example.org/models"]})
    stale = repo.write("experiments/demo/locks/tagger.repository.lock.json", "{}")
    result = run_build()
    assert result.lock is None and result.lock_status == "removed" and not stale.exists()
    assert [(s.kind, s.verified) for s in result.in_place] == [("cvmfs", False)]
    assert list_snapshots(dest) == []
