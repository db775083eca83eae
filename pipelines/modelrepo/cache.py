"""The artifact cache below ``<dest>/cache``: verified bytes, addressed by their sha256.

    cache/sha256/<hex>       verified artifacts (read-only); snapshots hard-link to them
    cache/partial/<hex>.part downloads in progress, kept across runs so they can resume
    cache/tmp/               copies being written; anything here is garbage from a killed run
    cache/stat-cache.json    (file source, stat signature) -> sha256, so an unchanged local file
                             is not re-hashed on every rebuild

Nothing enters ``sha256/`` before its hash was checked, and it enters by ``os.replace``, so a
killed run leaves either the whole verified file or nothing there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

READ_ONLY = 0o444


class Cache:
    """Content-addressed store of verified artifacts. Callers hold the build lock of its ``dest``."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "sha256"
        self.partial = root / "partial"
        self.tmp = root / "tmp"

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

    def lookup(self, sha256: str, size: int | None = None) -> Path | None:
        """The verified file for ``sha256`` if cached (and of ``size`` when given)."""
        path = self.blob(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return path if size is None or st.st_size == size else None

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
        return target


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
