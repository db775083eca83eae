"""Publishing a model repository as an immutable snapshot: ``<store>/snapshots/<digest>/``.

A snapshot is assembled in a hidden temporary directory *inside* ``<store>/snapshots`` (same file
system) and appears under its digest only through one ``os.rename``. So, whenever the build is
killed (even SIGKILL), readers see either no snapshot or the complete one; earlier snapshots are
never touched; and the hidden ``.tmp-*`` leftovers are removed by the next build. Files are
hard-linked from the verified cache (copied where links are impossible) and made read-only.

Builds on one store are serialised by an advisory lock (:func:`store_lock`), which the kernel
releases even when the holder is killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.modelrepo.progress import Observer

SNAPSHOTS = "snapshots"
TMP_PREFIX = ".tmp-"
FILE_MODE = 0o444
DIR_MODE = 0o755


class StoreBusy(Exception):
    """Another build holds the store's lock for longer than we wait."""


class SnapshotError(Exception):
    """A snapshot cannot be published or an existing one does not match what it should hold."""


@dataclass(frozen=True)
class Entry:
    """One file of a repository: a verified artifact to link/copy, or small generated content."""

    relpath: str  # POSIX path inside the snapshot, e.g. "btag/1/model.onnx"
    size: int
    source: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Published:
    path: Path
    created: bool  # False: an identical snapshot already existed and nothing was written
    copied: int  # artifact bytes copied (hard links cost none; generated files are not counted)


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
    # Read-only files in owner-writable directories: the owner can remove them without chmod.
    shutil.rmtree(path, ignore_errors=True)


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


def _check_existing(path: Path, entries: Sequence[Entry]) -> list[str]:
    """Cheap integrity check of a published snapshot: every file present, with its size (and content
    for generated files). Artifacts were hashed before publication and are read-only since."""
    problems = []
    for e in entries:
        f = path / e.relpath
        try:
            st = f.stat()
        except FileNotFoundError:
            problems.append(f"{e.relpath} is missing")
            continue
        if st.st_size != e.size:
            problems.append(f"{e.relpath} has {st.st_size} bytes, expected {e.size}")
        elif e.data is not None and f.read_bytes() != e.data:
            problems.append(f"{e.relpath} differs from the generated content")
    return problems


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
    store: Path, digest: str, entries: Sequence[Entry], observer: Observer, chunk: int = 1 << 20
) -> Published:
    """Publish ``entries`` as ``store/snapshots/<digest>`` atomically, or reuse an identical one.

    Raises SnapshotError when a snapshot with this digest exists but does not hold ``entries``
    (someone changed a published snapshot): it is reported, never silently served or replaced.
    """
    final = snapshot_dir(store, digest)
    if final.is_dir():
        problems = _check_existing(final, entries)
        if problems:
            raise SnapshotError(
                f"snapshot {final} exists but was modified ({'; '.join(problems[:3])}); "
                "remove it and build again"
            )
        return Published(final, False, 0)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{digest[:16]}-", dir=final.parent))
    copied = 0
    try:
        observer.stage("assemble", digest)
        for e in entries:
            observer.stage("link", e.relpath)
            copied += _place(e, tmp / e.relpath, chunk, observer)
        for d in sorted({p for p in tmp.rglob("*") if p.is_dir()} | {tmp}):
            os.chmod(d, DIR_MODE)  # world-readable: Triton runs as a non-root user
        observer.stage("publish", digest)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and final.is_dir():
                _rmtree(tmp)  # published meanwhile by someone not holding the lock: same digest, same content
                return Published(final, False, 0)
            raise
    except BaseException:
        if tmp.exists():
            _rmtree(tmp)
        raise
    return Published(final, True, copied)
