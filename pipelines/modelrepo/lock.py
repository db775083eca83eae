"""``repository.lock.json``: exactly which model bytes, with which config, a deployment serves.

Written by ``sonic build-models``, committed next to the deployment
(``experiments/<experiment>/locks/<deployment>.repository.lock.json``), and read by the
renderers, which point Triton at the snapshot it names. A model change is therefore a
reviewable diff, and a rollback is a ``git revert``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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

    @classmethod
    def from_json(cls, text: str) -> Lock:
        raw = json.loads(text)
        if raw.get("version") != LOCK_VERSION:
            raise ValueError(f"unsupported lock file version {raw.get('version')!r} (expected {LOCK_VERSION})")
        models = tuple(LockedModel(**{**m, "versions": tuple(m["versions"])}) for m in raw["models"])
        return cls(experiment=raw["experiment"], deployment=raw["deployment"], snapshot=raw["snapshot"], models=models)


def lock_path(deployment_file: Path, deployment_name: str) -> Path:
    """Where the lock of the deployment declared in ``deployment_file`` lives."""
    return deployment_file.parent / "locks" / f"{deployment_name}.repository.lock.json"


def read_lock(deployment_file: Path, deployment_name: str) -> Lock | None:
    """The committed lock, or None when the deployment has not been built yet."""
    path = lock_path(deployment_file, deployment_name)
    if not path.is_file():
        return None
    return Lock.from_json(path.read_text(encoding="utf-8"))
