"""``sonic build-models --verify``: re-hash, offline, every stored file a committed lock names.

The lock says which bytes a deployment serves: the snapshot ``snapshots/<digest>/`` (each
model's ``config.pbtxt`` with its ``config_sha256``, each version's artifact with its
``sha256``), the ``--local`` CPU variant derived from it, and the verified copies in the cache.
Everything present is read and hashed again; nothing is fetched and nothing is changed. A file
with other bytes, a missing file, or a file that should not be there is a :class:`Mismatch`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigErrors
from pipelines.config.modelconfig import pbtxt
from pipelines.modelrepo import layout, local
from pipelines.modelrepo.integrity import HashMemo, Mismatch, check_file, sha256_file, verify_tree
from pipelines.modelrepo.lock import Lock, LockedModel
from pipelines.modelrepo.snapshot import snapshot_dir

MODEL_FILE = "<model file>"  # shown when neither the config nor the directory names the artifact


@dataclass(frozen=True)
class Part:
    """One stored copy checked: the snapshot, the local variant, or the cache entries."""

    name: str  # "snapshot", "local variant", "cache"
    path: Path
    present: bool
    files: int = 0  # files re-hashed
    mismatches: tuple[Mismatch, ...] = ()
    absent: int = 0  # cache entries not there (not an error: the snapshot holds the bytes)


@dataclass(frozen=True)
class Verification:
    lock: Lock
    parts: tuple[Part, ...]

    @property
    def mismatches(self) -> list[tuple[Part, Mismatch]]:
        return [(p, m) for p in self.parts for m in p.mismatches]

    @property
    def ok(self) -> bool:
        """Every file intact, and the snapshot the lock names is there."""
        return not self.mismatches and self.parts[0].present


Config = tuple[str, mc.ModelConfig]


def _config(snap: Path, m: LockedModel) -> Config | None:
    """The model's config text and parsed config, when the file is there with its locked sha256.

    None otherwise; the file itself is reported by the snapshot's check.
    """
    path = snap / m.name / "config.pbtxt"
    try:
        if path.is_symlink() or not path.is_file() or sha256_file(path) != m.config_sha256:
            return None
        text = path.read_text(encoding="utf-8")
        return text, pbtxt.parse(text, str(path))
    except (OSError, UnicodeDecodeError, ConfigErrors):
        return None


def _filename(snap: Path, m: LockedModel, cfg: mc.ModelConfig | None) -> str:
    """The artifact's file name: as the config makes Triton look for it, else the one file there."""
    if cfg is not None:
        name = cfg.default_model_filename or pbtxt.DEFAULT_FILENAMES.get(pbtxt.platform_of(cfg))
        if name:
            return str(name)
    for v in m.versions:
        folder = snap / m.name / str(v)
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        if len(names) == 1:
            return names[0]
    return MODEL_FILE


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MODEL = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,127}$")  # the deployment schema's model name


def lock_problems(lock: Lock) -> list[str]:
    """What makes a lock unusable as a list of paths (``field: why``): a lock is a committed file, and
    its names become paths below the store, so none may climb out of it (``..``) or name a file there.
    """
    problems = []
    if not _HEX64.match(str(lock.snapshot)):
        problems.append(f"snapshot: {lock.snapshot!r} is not a sha256 digest (64 lower-case hex digits)")
    for i, m in enumerate(lock.models):
        if not isinstance(m.name, str) or not _MODEL.match(m.name) or m.name in (".", ".."):
            problems.append(f"models[{i}].name: {m.name!r} is not a model name")
        for field_name in ("sha256", "config_sha256"):
            if not _HEX64.match(str(getattr(m, field_name))):
                problems.append(f"models[{i}].{field_name}: not a sha256 digest (64 lower-case hex digits)")
        if not m.versions or not all(type(v) is int and v >= 1 for v in m.versions):
            problems.append(f"models[{i}].versions: {list(m.versions)!r} are not versions (integers >= 1)")
    return problems


def verify_lock(dest: Path, lock: Lock, *, workers: int = 1) -> Verification:
    """Re-hash the snapshot, local variant and cache entries of ``lock`` stored in ``dest``.

    ``lock`` must have no :func:`lock_problems` (its names are used as paths).
    """
    if lock_problems(lock):
        raise ValueError("; ".join(lock_problems(lock)))
    memo = HashMemo()
    snap = snapshot_dir(dest, lock.snapshot)
    parts: list[Part] = []
    configs = {m.name: _config(snap, m) if snap.is_dir() else None for m in lock.models}
    if snap.is_dir():
        expected: dict[str, str] = {}
        for m in lock.models:
            expected[f"{m.name}/config.pbtxt"] = m.config_sha256
            got = configs[m.name]
            name = _filename(snap, m, got[1] if got else None)
            for v in m.versions:
                expected[f"{m.name}/{v}/{name}"] = m.sha256
        check = verify_tree(snap, expected, workers=workers, memo=memo)
        parts.append(Part("snapshot", snap, True, len(expected), check.mismatches))
    else:
        parts.append(Part("snapshot", snap, False))

    parts.append(_local_part(dest, lock, snap, configs, workers, memo))

    cache = dest / "cache" / "sha256"
    problems: list[Mismatch] = []
    hashed = absent = 0
    for sha in sorted({m.sha256 for m in lock.models}):
        blob = cache / sha
        if not blob.exists() and not blob.is_symlink():
            absent += 1
            continue
        problem, _ = check_file(cache, sha, sha, memo=memo)
        if problem is not None:
            problems.append(problem)
        hashed += 1
    parts.append(Part("cache", cache, cache.is_dir(), hashed, tuple(problems), absent))
    return Verification(lock, tuple(parts))


def _local_part(
    dest: Path,
    lock: Lock,
    snap: Path,
    configs: dict[str, Config | None],
    workers: int,
    memo: HashMemo,
) -> Part:
    """The ``--local`` variant: its digest and files follow from the snapshot's (verified) configs."""
    store = local.local_store(dest)
    models = []
    for m in lock.models:
        got = configs[m.name]
        if got is None:  # without every config the variant's digest is unknown
            return Part("local variant", store / "snapshots", False)
        text, cfg = got
        models.append(
            layout.RepoModel(
                name=m.name,
                platform=pbtxt.platform_of(cfg),
                versions=m.versions,
                filename=_filename(snap, m, cfg),
                config_text=text,
                config=cfg,
                artifact=dest / "cache" / "sha256" / m.sha256,
                sha256=m.sha256,
                size=m.size,
                source=m.source,
            )
        )
    plan = local.plan(models)
    path = snapshot_dir(store, plan.digest)
    if not path.is_dir():
        return Part("local variant", path, False)
    expected = {e.relpath: e.digest for e in plan.entries}
    check = verify_tree(path, expected, workers=workers, memo=memo)
    return Part("local variant", path, True, len(expected), check.mismatches)
