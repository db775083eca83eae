"""The artifact cache below ``<dest>/cache``: verified bytes, addressed by their sha256.

    cache/sha256/<hex>       verified artifacts (read-only); snapshots hard-link to them
    cache/partial/<hex>.part downloads in progress, kept across runs so they can resume
    cache/tmp/               copies being written; anything here is garbage from a killed run
    cache/stat-cache.json    (file source, stat signature) -> sha256, so an unchanged local file
                             is not re-hashed on every rebuild
    cache/verified.json      (cached artifact, stat signature) at its last verification

Nothing enters ``sha256/`` before its hash was checked, and it enters by ``os.replace``, so a
killed run leaves either the whole verified file or nothing there. A cached artifact is trusted
without re-reading only while its stat signature (device, inode, size, mtime, ctime) is the one
recorded when it was last hashed; otherwise :meth:`Cache.lookup` re-hashes it and evicts it when
its bytes changed. Linking a snapshot to it changes its ctime too (the link count is inode
metadata), so the build records the signature again after it re-hashed the snapshot. A signature
can be forged by someone who owns the file and the clock, so whatever is published or served is
re-hashed anyway (``pipelines.modelrepo.integrity``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

READ_ONLY = 0o444


class Cache:
    """Content-addressed store of verified artifacts. Callers hold the build lock of its ``dest``."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "sha256"
        self.partial = root / "partial"
        self.tmp = root / "tmp"
        self.verified = StatCache(root / "verified.json")

    def prepare(self) -> None:
        """Create the folders and remove garbage left by a killed run (partial downloads are kept)."""
        for d in (self.blobs, self.partial, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for leftover in self.root.glob(".stat-cache-*.tmp"):
            leftover.unlink(missing_ok=True)

    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256

    def part(self, sha256: str) -> Path:
        return self.partial / f"{sha256}.part"

    def lookup(self, sha256: str, size: int | None = None, *, rehash: bool = False) -> Lookup:
        """The verified file for ``sha256`` if cached (and of ``size`` when given).

        The entry is re-hashed when its stat signature differs from the one recorded at its last
        verification (or always, with ``rehash``); an entry whose bytes changed is evicted, and
        the returned note says so (the caller fetches it again).
        """
        path = self.blob(sha256)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return Lookup(None)
        shown = f"cache entry {path}"
        if not stat.S_ISREG(st.st_mode):
            self.evict(sha256)
            return Lookup(None, f"{shown} was not a regular file: removed it")
        if size is not None and st.st_size != size:
            self.evict(sha256)
            return Lookup(None, f"{shown} had {st.st_size} bytes, not {size}: removed it")
        if not rehash and self.verified.get(path, st) == sha256:
            return Lookup(path)
        from pipelines.modelrepo.integrity import sha256_file  # integrity imports this module

        try:
            got = sha256_file(path)
        except OSError as exc:
            self.evict(sha256)
            return Lookup(None, f"{shown} could not be read ({exc.strerror or exc}): removed it")
        if got != sha256:
            self.evict(sha256)
            return Lookup(
                None, f"{shown} was modified after it was verified (its bytes have sha256 {got}): removed it"
            )
        self.remember(path, st, sha256)
        return Lookup(path)

    def remember(self, path: Path, st: os.stat_result, sha256: str) -> None:
        """Record that the entry at ``path`` had ``sha256`` when it had stat ``st`` (if it still has)."""
        try:
            now = path.lstat()
        except FileNotFoundError:
            return
        if signature(now) == signature(st):
            self.verified.put(path, st, sha256)

    def evict(self, sha256: str) -> None:
        """Remove a cached entry (snapshots that hard-link it keep their own name of the inode)."""
        path = self.blob(sha256)
        path.unlink(missing_ok=True)
        self.verified.forget(path)

    def save(self) -> None:
        """Write the verification record (atomically)."""
        self.verified.save()

    def new_tmp(self) -> Path:
        """A fresh, unique file name in ``tmp/`` (the file is created empty)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="copy-")
        os.close(fd)
        return Path(name)

    def admit(self, verified: Path, sha256: str) -> Path:
        """Move an already verified file into the store (read-only) and return its cached path."""
        os.chmod(verified, READ_ONLY)
        target = self.blob(sha256)
        os.replace(verified, target)
        self.verified.put(target, target.lstat(), sha256)
        return target


@dataclass(frozen=True)
class Lookup:
    """What :meth:`Cache.lookup` found: the verified entry (or None), and what it had to do about it."""

    path: Path | None
    note: str = ""


Signature = tuple[int, int, int, int, int]


def signature(st: os.stat_result) -> Signature:
    """What must be unchanged for a file's earlier hash to be trusted (ctime cannot be set by users)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatCache:
    """Earlier hashes of local source files, trusted only while the file's stat signature is unchanged.

    Thread-safe; :meth:`save` writes the whole table atomically.
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Signature, str]] = {}
        self._dirty = False
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            raw = json.loads(path.read_text(encoding="utf-8"))
            for key, (sig, sha) in raw.items():
                self._entries[key] = (tuple(int(x) for x in sig), str(sha))  # type: ignore[assignment]

    def get(self, path: Path, st: os.stat_result) -> str | None:
        with self._lock:
            entry = self._entries.get(str(path))
        return entry[1] if entry is not None and entry[0] == signature(st) else None

    def put(self, path: Path, st: os.stat_result, sha256: str) -> None:
        with self._lock:
            self._entries[str(path)] = (signature(st), sha256)
            self._dirty = True

    def forget(self, path: Path) -> None:
        with self._lock:
            if self._entries.pop(str(path), None) is not None:
                self._dirty = True

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            body = {k: [list(sig), sha] for k, (sig, sha) in sorted(self._entries.items())}
            self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".stat-cache-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=1, sort_keys=True)
        os.replace(name, self.path)
