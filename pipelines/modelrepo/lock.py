"""``repository.lock.json``: exactly which model bytes, with which config, a deployment serves.

Written by ``sonic build-models``, committed next to the deployment
(``experiments/<experiment>/locks/<deployment>.repository.lock.json``), and read by the
renderers, which point Triton at the snapshot it names. A model change is therefore a
reviewable diff, and a rollback is a ``git revert``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.config import layout

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedModel:
    name: str
    versions: tuple[int, ...]
    source: str  # as declared (URL or path relative to the deployment file)
    sha256: str  # of the artifact file
    size: int
    config_sha256: str  # of the generated (or supplied) config.pbtxt


@dataclass(frozen=True)
class Lock:
    experiment: str
    deployment: str
    snapshot: str  # digest: sha256 of the canonical lock content without this field
    models: tuple[LockedModel, ...]

    def to_json(self) -> str:
        """Canonical text: sorted keys, fixed indentation, trailing newline (byte-identical reruns)."""
        body: dict[str, Any] = {"version": LOCK_VERSION, **asdict(self)}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    def content_digest(self) -> str:
        """The snapshot digest this lock's content implies: sha256 of the canonical JSON without ``snapshot``.

        ``lock.snapshot == lock.content_digest()`` holds for every lock ``sonic build-models`` writes;
        a reader can use it to detect a hand-edited lock.
        """
        return content_digest(self.experiment, self.deployment, self.models)

    @property
    def repository_subpath(self) -> str:
        """Where the snapshot lives below the snapshot store's root (``snapshots/<digest>``)."""
        return f"snapshots/{self.snapshot}"

    @classmethod
    def from_json(cls, text: str) -> Lock:
        raw = json.loads(text)
        if raw.get("version") != LOCK_VERSION:
            raise ValueError(
                f"unsupported lock file version {raw.get('version')!r} (expected {LOCK_VERSION})"
            )
        models = tuple(LockedModel(**{**m, "versions": tuple(m["versions"])}) for m in raw["models"])
        return cls(
            experiment=raw["experiment"],
            deployment=raw["deployment"],
            snapshot=raw["snapshot"],
            models=models,
        )


def content_digest(experiment: str, deployment: str, models: tuple[LockedModel, ...]) -> str:
    """sha256 of the canonical lock content (compact JSON, sorted keys), excluding the digest itself."""
    body = {
        "version": LOCK_VERSION,
        "experiment": experiment,
        "deployment": deployment,
        "models": [asdict(m) for m in models],
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def lock_path(deployment_file: Path, deployment_name: str) -> Path:
    """Where the lock of the deployment declared in ``deployment_file`` lives."""
    return deployment_file.parent / layout.LOCKS_DIR / layout.lock_name(deployment_name)


def read_lock(deployment_file: Path, deployment_name: str) -> Lock | None:
    """The committed lock, or None when there is none.

    None means either that the deployment has not been built yet, or that it has nothing to lock:
    ``sonic build-models`` writes no lock for a deployment whose models all live in in-place
    repositories (CVMFS, PVC, NFS, baked image). A caller tells the two apart with the deployment
    itself: a lock is required exactly when some model declares an ``artifact``.
    """
    path = lock_path(deployment_file, deployment_name)
    if not path.is_file():
        return None
    return Lock.from_json(path.read_text(encoding="utf-8"))


def write_lock(deployment_file: Path, lock: Lock) -> bool:
    """Write ``lock`` where :func:`read_lock` finds it, atomically; False when the file already holds it.

    The text is canonical, so an unchanged build leaves the file byte-identical (and untouched).
    A temporary file in the same folder is renamed over the lock; leftovers of a killed writer
    are removed on the next write.
    """
    path = lock_path(deployment_file, lock.deployment)
    text = lock.to_json()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def remove_lock(deployment_file: Path, deployment_name: str) -> bool:
    """Delete a lock that no longer applies (the deployment has no artifact models); True if one existed."""
    path = lock_path(deployment_file, deployment_name)
    if not path.is_file():
        return False
    path.unlink()
    return True
