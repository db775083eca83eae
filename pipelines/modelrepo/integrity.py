"""Content checks of stored model files: re-hash a directory against the sha256 each file must have.

A size or a stat signature says a file was not *replaced*; only its bytes say it was not
*changed* (a one-bit edit keeps the size, ``os.utime`` puts the mtime back, and a hard link
shares the edit with every name of the inode). So whatever is about to be published or served
is re-hashed here first, and every difference is reported: a file with other bytes, a missing
file, and any file, link or device that should not be there at all.

Stored trees are read-only (files 0444, directories 0555): a slip of a tool or a person cannot
change them in place. Read-only is no protection against their owner (who may ``chmod``), which
is why the hashes are checked anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.modelrepo.cache import Signature, signature

CHUNK = 1 << 20
FILE_MODE = 0o444
DIR_MODE = 0o555  # read-only, and world-readable: Triton runs as a non-root user

MISSING = "missing"
ABSENT = "absent"


@dataclass(frozen=True)
class Mismatch:
    """One file that is not what it must be: ``expected`` and ``actual`` are sha256 hex digests or a word."""

    path: str
    expected: str
    actual: str

    def __str__(self) -> str:
        if self.expected == ABSENT:
            return f"{self.path}: {self.actual} (not part of what was published)"
        if self.actual == MISSING:
            return f"{self.path}: missing (expected sha256 {self.expected})"
        if len(self.actual) != 64:
            return f"{self.path}: {self.actual} (expected a regular file with sha256 {self.expected})"
        return f"{self.path}: expected sha256 {self.expected}, found {self.actual}"


@dataclass(frozen=True)
class TreeCheck:
    """The outcome of :func:`verify_tree`: differences, and the stat of each file found intact."""

    mismatches: tuple[Mismatch, ...]
    intact: Mapping[str, os.stat_result] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches


class HashMemo:
    """sha256 of inodes already hashed in this process, valid only while their stat signature is unchanged.

    One build verifies the main snapshot and the ``--local`` variant, which hard-link the same
    verified artifact: with a memo it is read once. Thread-safe; never persisted (a memo on disk
    would be a stat signature trusted across runs, which is what this module does not do).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[Signature, str] = {}

    def get(self, st: os.stat_result) -> str | None:
        with self._lock:
            return self._known.get(signature(st))

    def put(self, st: os.stat_result, sha256: str) -> None:
        with self._lock:
            self._known[signature(st)] = sha256


def sha256_file(path: Path, chunk: int = CHUNK, on_bytes: Callable[[int], None] | None = None) -> str:
    """The sha256 of a regular file, read in chunks; never follows a symbolic link (OSError)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            if on_bytes:
                on_bytes(n)
    return h.hexdigest()


def _what(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def check_file(
    root: Path, rel: str, expected: str, *, chunk: int = CHUNK, memo: HashMemo | None = None
) -> tuple[Mismatch | None, os.stat_result | None]:
    """Re-hash ``root/rel``: (None, its stat before hashing) when it has ``expected``, else the mismatch."""
    path = root / rel
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Mismatch(rel, expected, MISSING), None
    except NotADirectoryError:
        return Mismatch(rel, expected, MISSING), None
    if not stat.S_ISREG(st.st_mode):
        return Mismatch(rel, expected, _what(st.st_mode)), None
    got = memo.get(st) if memo is not None else None
    if got is None:
        try:
            got = sha256_file(path, chunk)
        except OSError as exc:
            return Mismatch(rel, expected, f"unreadable ({exc.strerror or exc})"), None
        after = path.lstat()
        if signature(after) != signature(st):
            return Mismatch(rel, expected, "changed while it was being verified"), None
        if memo is not None:
            memo.put(st, got)
    if got != expected:
        return Mismatch(rel, expected, got), None
    return None, st


def _unexpected(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "unexpected file"
    if stat.S_ISLNK(mode):
        return "unexpected symbolic link"
    return "unexpected special file"


def _present(root: Path) -> list[tuple[str, int]]:
    """Every non-directory entry below ``root`` (links not followed), with its mode."""
    found: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in list(dirnames):
            mode = (here / name).lstat().st_mode
            if not stat.S_ISDIR(mode):  # a link to a directory: reported, never entered
                dirnames.remove(name)
                found.append(((here / name).relative_to(root).as_posix(), mode))
        for name in filenames:
            found.append(((here / name).relative_to(root).as_posix(), (here / name).lstat().st_mode))
    return found


def verify_tree(
    root: Path,
    expected: Mapping[str, str],
    *,
    workers: int = 1,
    chunk: int = CHUNK,
    memo: HashMemo | None = None,
) -> TreeCheck:
    """Re-hash every file of ``expected`` (POSIX path below ``root`` -> sha256) and look for extra ones.

    Files are hashed in parallel (``workers`` threads; hashlib releases the GIL). Mismatches are
    sorted by path; ``intact`` holds the stat taken before hashing of each file that matched, so a
    caller can remember the inode as verified.
    """
    mismatches: list[Mismatch] = []
    intact: dict[str, os.stat_result] = {}
    for rel, mode in _present(root):
        if rel not in expected:
            mismatches.append(Mismatch(rel, ABSENT, _unexpected(mode)))
    items = sorted(expected.items())
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="verify") as pool:
        results = list(pool.map(lambda kv: check_file(root, kv[0], kv[1], chunk=chunk, memo=memo), items))
    for (rel, _), (problem, st) in zip(items, results, strict=True):
        if problem is not None:
            mismatches.append(problem)
        elif st is not None:
            intact[rel] = st
    return TreeCheck(tuple(sorted(mismatches, key=lambda m: m.path)), intact)


def make_read_only(root: Path) -> None:
    """Files 0444, directories 0555, the deepest first (``root`` included)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False):
        here = Path(dirpath)
        for name in filenames:
            if not (here / name).is_symlink():
                os.chmod(here / name, FILE_MODE)
        for name in dirnames:
            if not (here / name).is_symlink():
                os.chmod(here / name, DIR_MODE)
    os.chmod(root, DIR_MODE)


def make_writable(root: Path) -> None:
    """Give the owner write access to ``root``'s directories again (so the tree can be removed)."""
    if root.is_symlink() or not root.is_dir():
        return
    os.chmod(root, stat.S_IMODE(root.lstat().st_mode) | stat.S_IRWXU)
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        for name in dirnames:
            d = Path(dirpath) / name
            if not d.is_symlink():
                os.chmod(d, stat.S_IMODE(d.lstat().st_mode) | stat.S_IRWXU)


def remove_tree(root: Path) -> None:
    """Delete a (possibly read-only) stored tree; what cannot be deleted is left, silently."""
    with contextlib.suppress(OSError):
        make_writable(root)
    shutil.rmtree(root, ignore_errors=True)
