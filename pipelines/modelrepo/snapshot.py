"""Publishing a model repository as an immutable snapshot: ``<store>/snapshots/<digest>/``.

A snapshot is assembled in a hidden temporary directory *inside* ``<store>/snapshots`` (same file
system) and appears under its digest only through one ``os.rename``. So, whenever the build is
killed (even SIGKILL), readers see either no snapshot or the complete one; earlier snapshots are
never touched; and the hidden ``.tmp-*`` leftovers are removed by the next build. Files are
hard-linked from the verified cache (copied where links are impossible); the whole snapshot is
made read-only (files 0444, directories 0555) and **re-hashed before it is published or reused**:
every file must have the sha256 it is published under, and no other file may be there.

Builds on one store are serialised by an advisory lock (:func:`store_lock`), which the kernel
releases even when the holder is killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.modelrepo.integrity import (
    FILE_MODE,
    HashMemo,
    Mismatch,
    make_read_only,
    remove_tree,
    verify_tree,
)
from pipelines.modelrepo.progress import Observer

SNAPSHOTS = "snapshots"
TMP_PREFIX = ".tmp-"


class StoreBusy(Exception):
    """Another build holds the store's lock for longer than we wait."""


class SnapshotError(Exception):
    """A snapshot cannot be published or an existing one does not match what it should hold.

    ``mismatches`` lists every file that differs; ``existing`` tells a published snapshot that was
    modified from one that failed its check before publication (its cached bytes were modified).
    """

    def __init__(self, message: str, path: Path, mismatches: Sequence[Mismatch] = (), existing: bool = True):
        super().__init__(message)
        self.path = path
        self.mismatches = tuple(mismatches)
        self.existing = existing


@dataclass(frozen=True)
class Entry:
    """One file of a repository: a verified artifact to link/copy, or small generated content."""

    relpath: str  # POSIX path inside the snapshot, e.g. "btag/1/model.onnx"
    size: int
    source: Path | None = None
    data: bytes | None = None
    sha256: str = ""  # of the artifact (``source``); generated content is hashed from ``data``

    @property
    def digest(self) -> str:
        """The sha256 the file must have in the snapshot."""
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else self.sha256


@dataclass(frozen=True)
class Published:
    path: Path
    created: bool  # False: an identical snapshot already existed and nothing was written
    copied: int  # artifact bytes copied (hard links cost none; generated files are not counted)
    # relpath -> stat of each file as it was re-hashed before publication (or reuse)
    verified: Mapping[str, os.stat_result] = field(default_factory=dict)


def snapshot_dir(store: Path, digest: str) -> Path:
    """Where the snapshot ``digest`` lives in ``store``."""
    return store / SNAPSHOTS / digest


def list_snapshots(store: Path) -> list[str]:
    """Digests of the published snapshots (hidden temporary directories are not snapshots)."""
    root = store / SNAPSHOTS
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def clean_partial(store: Path) -> int:
    """Remove what killed builds left in ``store/snapshots``; returns how many leftovers went."""
    root = store / SNAPSHOTS
    if not root.is_dir():
        return 0
    gone = 0
    for p in root.iterdir():
        if p.name.startswith(TMP_PREFIX):
            _rmtree(p)
            gone += 1
    return gone


def _rmtree(path: Path) -> None:
    remove_tree(path)  # the directories of an assembled snapshot are read-only


@contextlib.contextmanager
def store_lock(dest: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold the build lock of ``dest`` (an flock on ``dest/.build.lock``); StoreBusy after ``timeout``."""
    dest.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest / ".build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusy(
                        f"another build holds {dest / '.build.lock'} for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def verify_snapshot(
    path: Path,
    entries: Sequence[Entry],
    *,
    workers: int = 1,
    chunk: int = 1 << 20,
    memo: HashMemo | None = None,
) -> tuple[list[Mismatch], dict[str, os.stat_result]]:
    """Re-hash every file of the snapshot at ``path``; the differences from ``entries`` (and extra files).

    Returns the mismatches and, for the files found intact, their stat when they were hashed.
    """
    check = verify_tree(path, {e.relpath: e.digest for e in entries}, workers=workers, chunk=chunk, memo=memo)
    return list(check.mismatches), dict(check.intact)


def modified_message(path: Path, mismatches: Sequence[Mismatch], limit: int = 10) -> str:
    """What to tell a person about a published snapshot whose files changed."""
    shown = [f"  {m}" for m in mismatches[:limit]]
    if len(mismatches) > limit:
        shown.append(f"  ... and {len(mismatches) - limit} more")
    return "\n".join(
        [
            f"snapshot {path} was modified after it was published; it is not used:",
            *shown,
            f"remove it (chmod -R u+w {path} && rm -rf {path}) and build again: the snapshot is "
            "assembled afresh from verified bytes",
        ]
    )


def _place(entry: Entry, target: Path, chunk: int, observer: Observer) -> int:
    """Write one entry at ``target``; returns artifact bytes copied (0 for a hard link or generated text)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.data is not None:
        target.write_bytes(entry.data)
        os.chmod(target, FILE_MODE)
        return 0
    assert entry.source is not None
    try:
        os.link(entry.source, target)
        return 0
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
    key = f"copy:{entry.relpath}"
    observer.begin(key, f"copy {entry.relpath}", entry.size)
    try:
        with open(entry.source, "rb") as fin, open(target, "wb") as fout:
            while block := fin.read(chunk):
                fout.write(block)
                observer.advance(key, len(block))
    finally:
        observer.end(key)
    os.chmod(target, FILE_MODE)
    return entry.size


def publish(
    store: Path,
    digest: str,
    entries: Sequence[Entry],
    observer: Observer,
    chunk: int = 1 << 20,
    *,
    workers: int = 1,
    memo: HashMemo | None = None,
) -> Published:
    """Publish ``entries`` as ``store/snapshots/<digest>`` atomically, or reuse an identical one.

    Either way every file is re-hashed first (``workers`` in parallel). Raises SnapshotError when
    a snapshot with this digest exists but does not hold exactly ``entries`` (someone changed a
    published snapshot, or the cached file it links): it is reported, never served or replaced.
    Raises SnapshotError with ``existing=False`` when the freshly assembled snapshot fails the
    check (a cached artifact changed under a forged stat); nothing is published then.
    """
    final = snapshot_dir(store, digest)
    if final.is_dir():
        observer.stage("verify", digest)
        problems, intact = verify_snapshot(final, entries, workers=workers, chunk=chunk, memo=memo)
        if problems:
            raise SnapshotError(modified_message(final, problems), final, problems)
        return Published(final, False, 0, intact)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{digest[:16]}-", dir=final.parent))
    copied = 0
    try:
        observer.stage("assemble", digest)
        for e in entries:
            observer.stage("link", e.relpath)
            copied += _place(e, tmp / e.relpath, chunk, observer)
        make_read_only(tmp)
        observer.stage("verify", digest)
        problems, intact = verify_snapshot(tmp, entries, workers=workers, chunk=chunk, memo=memo)
        if problems:
            raise SnapshotError(
                "\n".join(
                    [
                        f"snapshot {digest} was not published: its files are not the verified bytes:",
                        *(f"  {m}" for m in problems[:10]),
                        "the cached copies they came from were modified; they are removed: build again",
                    ]
                ),
                final,
                problems,
                existing=False,
            )
        observer.stage("publish", digest)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and final.is_dir():
                _rmtree(tmp)  # published meanwhile by someone not holding the lock: checked like any other
                problems, intact = verify_snapshot(final, entries, workers=workers, chunk=chunk, memo=memo)
                if problems:
                    raise SnapshotError(modified_message(final, problems), final, problems) from None
                return Published(final, False, 0, intact)
            raise
    except BaseException:
        if tmp.exists():
            _rmtree(tmp)
        raise
    return Published(final, True, copied, intact)
