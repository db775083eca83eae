"""What a Triton model repository built from verified artifacts contains, and what its lock records.

    <model>/config.pbtxt
    <model>/<version>/<filename>      the same verified artifact in every declared version

Everything in the layout is a function of the lock content (the file name is fixed by the
config: its ``default_model_filename`` or the platform's default), so the lock's digest names
the snapshot's content exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.modelrepo.lock import Lock, LockedModel, content_digest
from pipelines.modelrepo.snapshot import Entry


@dataclass(frozen=True)
class RepoModel:
    """One model ready to publish: checked config and verified artifact."""

    name: str
    platform: str
    versions: tuple[int, ...]
    filename: str
    config_text: str
    config: mc.ModelConfig = field(compare=False, repr=False)
    artifact: Path  # the verified file (in the cache)
    sha256: str
    size: int
    source: str  # as declared

    @property
    def config_sha256(self) -> str:
        return hashlib.sha256(self.config_text.encode("utf-8")).hexdigest()

    def locked(self) -> LockedModel:
        return LockedModel(
            name=self.name,
            versions=tuple(sorted(self.versions)),
            source=self.source,
            sha256=self.sha256,
            size=self.size,
            config_sha256=self.config_sha256,
        )


def make_lock(experiment: str, deployment: str, models: Sequence[RepoModel]) -> Lock:
    """The lock for ``models`` (ordered by name, so declaration order does not change the digest)."""
    locked = tuple(m.locked() for m in sorted(models, key=lambda m: m.name))
    return Lock(experiment, deployment, content_digest(experiment, deployment, locked), locked)


def entries(models: Sequence[RepoModel]) -> list[Entry]:
    """The files of the repository, in a stable order."""
    out: list[Entry] = []
    for m in sorted(models, key=lambda m: m.name):
        text = m.config_text.encode("utf-8")
        out.append(Entry(f"{m.name}/config.pbtxt", len(text), data=text))
        for v in sorted(m.versions):
            out.append(Entry(f"{m.name}/{v}/{m.filename}", m.size, source=m.artifact, sha256=m.sha256))
    return out
