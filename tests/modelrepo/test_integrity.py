"""Issue 11, finding 16: a snapshot (or the cache entry it hard-links) changed after verification is never
published, reused or served; ``sonic build-models --verify`` finds every such change, offline.

The attack is the quiet one: one bit flipped in place, the size kept and the mtime put back with
``os.utime``. Only the bytes tell, so every test here changes bytes that way.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.local import stack
from pipelines.local.state import run_dir, state_path
from pipelines.modelrepo.build import BuildResult
from pipelines.modelrepo.cache import Cache, StatCache
from pipelines.modelrepo.fetch import FetchPolicy, fetch, resolve
from pipelines.modelrepo.integrity import Mismatch, make_writable, remove_tree, verify_tree
from pipelines.modelrepo.progress import Quiet
from pipelines.modelrepo.snapshot import SnapshotError, list_snapshots
from tests.modelrepo.https_server import HttpsServer, https_server
from tests.modelrepo.support import Repo, blob_entry, sha256, tagger_entry, tree_files

Build = Callable[..., BuildResult]
BLOB = os.urandom(200_000)
FLIPPED = bytes([*BLOB[:1000], BLOB[1000] ^ 0x08, *BLOB[1001:]])


def flip(path: Path, offset: int = 1000) -> None:
    """Flip one bit of ``path`` in place, then put its mode and mtime back (its size never changes)."""
    before = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x08]))
    os.chmod(path, stat.S_IMODE(before.st_mode))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def forge_trust(cache_root: Path, sha: str) -> None:
    """What someone who also controls the clock achieves: the record says the changed inode is verified."""
    record = StatCache(cache_root / "verified.json")
    blob = cache_root / "sha256" / sha
    record.put(blob, blob.lstat(), sha)
    record.save()


def writable(path: Path) -> None:
    make_writable(path)


@pytest.fixture
def built(repo: Repo, tagger_bytes: bytes, run_build: Build) -> BuildResult:
    """tagger (ONNX) and blob (opaque) built with the --local variant."""
    repo.write("experiments/demo/models/tagger.onnx", tagger_bytes)
    repo.write("experiments/demo/models/blob.pt", BLOB)
    repo.deployment([tagger_entry(tagger_bytes), blob_entry(BLOB)])
    result = run_build(local=True)
    assert result.snapshot is not None and result.local_snapshot is not None
    return result


def cached(dest: Path) -> Path:
    return dest / "cache" / "sha256" / sha256(BLOB)


MISMATCH = Mismatch("blob/1/model.pt", sha256(BLOB), sha256(FLIPPED))


def test_snapshots_and_cache_entries_are_stored_read_only(built: BuildResult, dest: Path) -> None:
    for snapshot in (built.snapshot, built.local_snapshot):
        assert snapshot is not None
        modes = {
            p.relative_to(snapshot).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in snapshot.rglob("*")
        }
        assert {m for p, m in modes.items() if (snapshot / p).is_dir()} == {0o555}
        assert {m for p, m in modes.items() if (snapshot / p).is_file()} == {0o444}
        assert stat.S_IMODE(snapshot.stat().st_mode) == 0o555
    assert {stat.S_IMODE(p.stat().st_mode) for p in (dest / "cache" / "sha256").iterdir()} == {0o444}


def test_a_flipped_bit_in_a_published_snapshot_is_refused_by_the_rebuild_and_the_dry_run(
    built: BuildResult, dest: Path, run_build: Build
) -> None:
    assert built.snapshot is not None
    victim = built.snapshot / "blob" / "1" / "model.pt"
    assert victim.samefile(cached(dest))  # the snapshot hard-links the cache entry: both changed
    flip(victim)

    with pytest.raises(SnapshotError) as dry:
        run_build(dry_run=True)
    assert dry.value.mismatches == (MISMATCH,)

    with pytest.raises(SnapshotError) as info:
        run_build(local=True)
    assert info.value.existing and info.value.mismatches == (MISMATCH,)
    message = str(info.value)
    assert message.startswith(
        f"snapshot {built.snapshot} was modified after it was published; it is not used:"
    )
    assert f"  blob/1/model.pt: expected sha256 {sha256(BLOB)}, found {sha256(FLIPPED)}" in message
    assert f"chmod -R u+w {built.snapshot} && rm -rf {built.snapshot}" in message
    # The cache entry it shared was evicted and copied again from the source: verified bytes only.
    assert cached(dest).read_bytes() == BLOB and not cached(dest).samefile(victim)

    # Removing the snapshot (as the message says) and building again publishes the verified bytes.
    remove_tree(built.snapshot)
    again = run_build(local=True)
    assert again.snapshot == built.snapshot and again.snapshot_created
    assert (again.snapshot / "blob" / "1" / "model.pt").read_bytes() == BLOB


def test_a_flipped_bit_in_a_cache_entry_is_evicted_and_fetched_again(
    built: BuildResult, dest: Path, run_build: Build
) -> None:
    remove_tree(dest / "snapshots")
    remove_tree(dest / "local")
    flip(cached(dest))
    result = run_build()
    (note,) = [m.note for m in result.models if m.note]
    assert note == (
        f"cache entry {cached(dest)} was modified after it was verified (its bytes have sha256 "
        f"{sha256(FLIPPED)}): removed it; copied it again from the source"
    )
    assert result.snapshot is not None and (result.snapshot / "blob" / "1" / "model.pt").read_bytes() == BLOB
    assert cached(dest).read_bytes() == BLOB


def test_with_a_forged_stat_the_re_hash_before_reuse_still_refuses(
    built: BuildResult, dest: Path, run_build: Build
) -> None:
    assert built.snapshot is not None
    flip(cached(dest))
    forge_trust(dest / "cache", sha256(BLOB))  # the cache lookup trusts the entry now
    with pytest.raises(SnapshotError) as info:
        run_build()
    assert info.value.mismatches == (MISMATCH,)
    assert not cached(dest).exists()  # it shared the modified inode: evicted


def test_with_a_forged_stat_a_new_snapshot_is_not_published(
    built: BuildResult, dest: Path, run_build: Build
) -> None:
    assert built.snapshot is not None
    remove_tree(dest / "snapshots")
    flip(cached(dest))
    forge_trust(dest / "cache", sha256(BLOB))
    with pytest.raises(SnapshotError) as info:
        run_build()
    assert not info.value.existing and info.value.mismatches == (MISMATCH,)
    assert str(info.value).startswith(f"snapshot {built.snapshot.name} was not published")
    assert list_snapshots(dest) == [] and list((dest / "snapshots").iterdir()) == []  # no leftovers
    assert not cached(dest).exists()
    assert run_build().snapshot_created  # copied again from the source, verified, published


def test_files_that_do_not_belong_in_a_snapshot_are_refused(
    built: BuildResult, dest: Path, run_build: Build
) -> None:
    assert built.snapshot is not None
    writable(built.snapshot)
    (built.snapshot / "blob" / "1" / "model.py").write_text("import os; os.system('id')\n")
    config = built.snapshot / "tagger" / "config.pbtxt"
    config.unlink()
    config.symlink_to(built.snapshot / "blob" / "config.pbtxt")
    with pytest.raises(SnapshotError) as info:
        run_build()
    assert [str(m) for m in info.value.mismatches] == [
        "blob/1/model.py: unexpected file (not part of what was published)",
        f"tagger/config.pbtxt: a symbolic link (expected a regular file with sha256 "
        f"{info.value.mismatches[1].expected})",
    ]


def test_a_rebuild_records_the_re_hashed_cache_entries_so_the_next_lookup_reads_nothing_twice(
    built: BuildResult, dest: Path
) -> None:
    # Linking the snapshots changed the entry's ctime; the build re-hashed it through the snapshot
    # and recorded the new stat, so the next build's lookup trusts it and only the re-hash of the
    # snapshot reads it.
    record = StatCache(dest / "cache" / "verified.json")
    assert record.get(cached(dest), cached(dest).lstat()) == sha256(BLOB)


def test_local_up_refuses_to_serve_a_modified_snapshot(
    repo: Repo, tagger_bytes: bytes, run_build: Build
) -> None:
    store = repo.root / ".sonic" / "models"  # where `sonic local up` builds and serves from
    repo.write("experiments/demo/models/tagger.onnx", tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes)])
    try:
        first = run_build(local=True, dest=store)
        assert first.local_snapshot is not None
        flip(first.local_snapshot / "tagger" / "1" / "model.onnx", offset=len(tagger_bytes) - 5)
        tree, deployment = repo.load()
        p = deployment.placements[0]
        with pytest.raises(stack.StackError) as info:
            stack.up(tree, p, root=repo.root, with_prometheus=False)
        assert str(info.value).startswith(
            "demo/tagger: not served: snapshot "
            + str(first.snapshot)
            + " was modified after it was published"
        )
        assert "tagger/1/model.onnx: expected sha256" in str(info.value)
        assert not state_path(run_dir(repo.root, p)).exists()  # nothing was started
        # The generated files of the local variant are checked the same way.
        writable(first.local_snapshot)
        remove_tree(first.snapshot)  # type: ignore[arg-type]
        (first.local_snapshot / "tagger" / "1" / "model.py").write_text("import os; os.system('id')\n")
        with pytest.raises(stack.StackError, match=r"tagger/1/model.py: expected sha256 [0-9a-f]{64}, found"):
            stack.up(tree, p, root=repo.root, with_prometheus=False)
    finally:
        make_writable(store)


# --- sonic build-models --verify -------------------------------------------------------------------


def verify(repo: Repo, dest: Path, *extra: str) -> tuple[int, str, str]:
    args = ["build-models", "tagger", "--root", str(repo.root), "--dest", str(dest), "--verify", *extra]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_verify_re_hashes_what_the_lock_names_offline(repo: Repo, built: BuildResult, dest: Path) -> None:
    # --verify reads the store only: never the sources (here changed since), never the network.
    (repo.root / "experiments/demo/models/blob.pt").write_bytes(b"something else")
    code, out, err = verify(repo, dest)
    assert code == 0, out + err
    assert built.snapshot is not None and built.local_snapshot is not None
    lines = out.splitlines()
    assert lines[1].endswith(f"snapshots/{built.snapshot.name}: 4 files re-hashed, intact")
    assert lines[2].endswith(f"local/snapshots/{built.local_snapshot.name}: 3 files re-hashed, intact")
    assert lines[3] == "  cache: 2 entries re-hashed, intact"


def test_verify_reports_every_modified_file(
    repo: Repo, built: BuildResult, dest: Path, tagger_bytes: bytes
) -> None:
    assert built.snapshot is not None and built.local_snapshot is not None
    victim = built.snapshot / "tagger" / "1" / "model.onnx"
    flip(victim, offset=len(tagger_bytes) - 5)  # one inode: snapshot, local variant and cache entry
    tail = f"expected sha256 {sha256(tagger_bytes)}, found {sha256(victim.read_bytes())}"
    code, out, err = verify(repo, dest)
    assert code == 1
    modified = [line for line in out.splitlines() if line.startswith("MODIFIED ")]
    assert modified == [
        f"MODIFIED {built.snapshot}/tagger/1/model.onnx: {tail}",
        f"MODIFIED {built.local_snapshot}/tagger/1/model.onnx: {tail}",
        f"MODIFIED {dest / 'cache' / 'sha256'}/{sha256(tagger_bytes)}: {tail}",
    ]
    assert "3 stored file(s) differ from the lock: never serve them" in err
    assert "Traceback" not in out + err

    code, out, _ = verify(repo, dest, "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["mismatches"][0] == {
        "file": f"{victim}",
        "expected": sha256(tagger_bytes),
        "actual": sha256(victim.read_bytes()),
    }


def test_the_build_command_refuses_a_modified_snapshot_with_exit_1(
    repo: Repo, built: BuildResult, dest: Path
) -> None:
    assert built.snapshot is not None
    flip(built.snapshot / "blob" / "1" / "model.pt")
    args = ["build-models", "tagger", "--root", str(repo.root), "--dest", str(dest)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 1
    assert (
        f"sonic: snapshot {built.snapshot} was modified after it was published; it is not used:"
        in result.stderr
    )
    assert f"blob/1/model.pt: expected sha256 {sha256(BLOB)}, found {sha256(FLIPPED)}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda lock: lock["models"][0].update(name="../../../etc"),
            "models[0].name: '../../../etc' is not a model name",
        ),
        (
            lambda lock: lock["models"][0].update(versions=["../x"]),
            "models[0].versions: ['../x'] are not versions",
        ),
        (lambda lock: lock.update(snapshot="../cache"), "snapshot: '../cache' is not a sha256 digest"),
        (lambda lock: lock["models"][1].update(sha256="passwd"), "models[1].sha256: not a sha256 digest"),
    ],
)
def test_verify_refuses_a_lock_whose_names_are_not_paths_in_the_store(
    repo: Repo, built: BuildResult, dest: Path, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    # A lock is a committed file: a pull request could make its names climb out of the store.
    lock = json.loads(built.lock_file.read_text())
    change(lock)
    built.lock_file.write_text(json.dumps(lock))
    code, out, err = verify(repo, dest)
    assert code == 1 and out == ""
    assert f"experiments/demo/locks/tagger.repository.lock.json: {problem}" in err
    assert "is not a lock sonic build-models wrote: nothing verified" in err


def test_verify_without_the_snapshot_fails(repo: Repo, built: BuildResult, dest: Path) -> None:
    assert built.snapshot is not None
    remove_tree(built.snapshot)
    code, out, err = verify(repo, dest)
    assert code == 1 and "  snapshot: not in" in out
    assert f"the snapshot {built.snapshot.name} is not in {dest}: build it first" in err


def test_verify_cannot_be_combined_with_a_build(repo: Repo, built: BuildResult, dest: Path) -> None:
    code, _, err = verify(repo, dest, "--local")
    assert code == 2 and "--verify builds nothing" in err


# --- the building blocks ---------------------------------------------------------------------------


def test_verify_tree_reports_changed_missing_and_unexpected_files(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"changed")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "extra").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")
    check = verify_tree(
        tmp_path, {"a": sha256(b"a"), "b": sha256(b"b"), "c": sha256(b"c"), "link": sha256(b"a")}, workers=2
    )
    assert check.mismatches == (
        Mismatch("b", sha256(b"b"), sha256(b"changed")),
        Mismatch("c", sha256(b"c"), "missing"),
        Mismatch("d/extra", "absent", "unexpected file"),
        Mismatch("dirlink", "absent", "unexpected symbolic link"),
        Mismatch("link", sha256(b"a"), "a symbolic link"),
    )
    assert set(check.intact) == {"a"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpsServer]:
    with https_server(tmp_path / "tls") as s:
        yield s


def test_a_modified_downloaded_entry_is_downloaded_again(server: HttpsServer, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.prepare()
    server.behaviour.files["/m.pt"] = BLOB
    source = resolve(server.url + "/m.pt", tmp_path, tmp_path)
    policy = FetchPolicy(ca_bundle=server.ca, allow_internal_for_tests=frozenset({server.url[8:]}))

    def get(rehash: bool = False) -> str:
        got = fetch(
            source, sha256(BLOB), len(BLOB), cache, StatCache(tmp_path / "s.json"), policy, Quiet(), "k",
            rehash_cached=rehash,
        )  # fmt: skip
        assert got.path.read_bytes() == BLOB
        return got.note

    assert get() == "" and len(server.behaviour.requests) == 1
    flip(cache.blob(sha256(BLOB)))
    assert get().endswith(f"(its bytes have sha256 {sha256(FLIPPED)}): removed it; downloaded it again")
    assert len(server.behaviour.requests) == 2
    # A forged stat fools the stat check, not a re-hash (what a dry run asks for: it publishes nothing
    # that would re-hash the entry later).
    flip(cache.blob(sha256(BLOB)))
    cache.verified.put(cache.blob(sha256(BLOB)), cache.blob(sha256(BLOB)).lstat(), sha256(BLOB))  # forged
    assert cache.lookup(sha256(BLOB), len(BLOB)).path is not None  # the stat check is fooled
    assert "modified after it was verified" in get(rehash=True) and len(server.behaviour.requests) == 3
    cache.save()
    assert tree_files(cache.blobs) == {sha256(BLOB): sha256(BLOB)}
