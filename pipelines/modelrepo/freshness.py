"""Is a committed lock still what ``sonic build-models`` would write for the deployment as declared?

Cheap and without I/O: no artifact is fetched, and the digests of supplied ``config.pbtxt``
files are read beforehand (:func:`supplied_config_sha256`, at the edge). The config digest is
recomputed from the declaration (configs are generated deterministically), so a change of
batching, tensors or instances that was not rebuilt is caught as well as a new artifact.
Renderers and ``sonic validate`` can refuse a stale lock with this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pipelines.config.model import Model, Placement, deployment_ref
from pipelines.config.modelconfig import pbtxt
from pipelines.modelrepo.lock import Lock


def supplied_config_sha256(p: Placement) -> dict[str, str | None]:
    """sha256 of each supplied ``configFile`` of ``p``'s models, by model name (None if unreadable).

    The one file read :func:`stale_reasons` depends on, done by its caller.
    """
    digests: dict[str, str | None] = {}
    for model in p.models:
        if model.config_file is not None:
            try:
                digests[model.name] = hashlib.sha256(
                    (p.source.parent / model.config_file).read_bytes()
                ).hexdigest()
            except OSError:
                digests[model.name] = None
    return digests


def _config_sha256(model: Model, supplied: Mapping[str, str | None]) -> str | None:
    if model.config_file is not None:
        return supplied.get(model.name)
    return hashlib.sha256(pbtxt.to_text(pbtxt.generate(model)).encode("utf-8")).hexdigest()


def expected_config_sha256(model: Model, p: Placement) -> str | None:
    """sha256 of the config.pbtxt a build would publish for ``model`` (None if a supplied file is unreadable)."""
    return _config_sha256(model, supplied_config_sha256(p))


def stale_reasons(lock: Lock, p: Placement, supplied: Mapping[str, str | None]) -> list[str]:
    """Why ``lock`` does not describe ``p``'s models with artifacts; empty when it is current.

    ``supplied`` holds the digests of the supplied config files (:func:`supplied_config_sha256`).
    """
    reasons: list[str] = []
    if (lock.experiment, lock.deployment) != (p.experiment, p.name):
        reasons.append(f"the lock is for {deployment_ref(lock.experiment, lock.deployment)}, not {p.ref}")
    if lock.snapshot != lock.content_digest():
        reasons.append("the snapshot digest does not match the lock's content (edited by hand?)")
    locked = {m.name: m for m in lock.models}
    declared = {m.name: m for m in p.models if m.artifact is not None}
    for name in sorted(set(locked) - set(declared)):
        reasons.append(f"model {name!r} is locked but not declared with an artifact")
    for name, m in sorted(declared.items()):
        assert m.artifact is not None
        entry = locked.get(name)
        if entry is None:
            reasons.append(f"model {name!r} is declared but not in the lock")
            continue
        if entry.sha256 != m.artifact.sha256:
            reasons.append(f"model {name!r}: artifact sha256 changed")
        if entry.source != m.artifact.source:
            reasons.append(f"model {name!r}: artifact source changed")
        if m.artifact.size is not None and entry.size != m.artifact.size:
            reasons.append(f"model {name!r}: artifact size changed")
        if tuple(entry.versions) != tuple(sorted(m.versions)):
            reasons.append(f"model {name!r}: versions changed")
        if entry.config_sha256 != _config_sha256(m, supplied):
            reasons.append(f"model {name!r}: its config.pbtxt changed (batching, tensors, instances, ...)")
    return reasons
