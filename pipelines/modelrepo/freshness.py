"""Is a committed lock still what ``sonic build-models`` would write for the deployment as declared?

Cheap and without I/O beyond reading supplied ``config.pbtxt`` files: no artifact is fetched.
The config digest is recomputed from the declaration (configs are generated deterministically),
so a change of batching, tensors or instances that was not rebuilt is caught as well as a new
artifact. Renderers and ``sonic validate`` can refuse a stale lock with this.
"""

from __future__ import annotations

import hashlib

from pipelines.config.model import Model, SiteDeployment
from pipelines.config.modelconfig import pbtxt
from pipelines.modelrepo.lock import Lock


def expected_config_sha256(model: Model, p: SiteDeployment) -> str | None:
    """sha256 of the config.pbtxt a build would publish for ``model`` (None if a supplied file is unreadable)."""
    if model.config_file is not None:
        try:
            return hashlib.sha256((p.source.parent / model.config_file).read_bytes()).hexdigest()
        except OSError:
            return None
    return hashlib.sha256(pbtxt.to_text(pbtxt.generate(model)).encode("utf-8")).hexdigest()


def stale_reasons(lock: Lock, p: SiteDeployment) -> list[str]:
    """Why ``lock`` does not describe ``p``'s models with artifacts; empty when it is current."""
    reasons: list[str] = []
    if (lock.experiment, lock.deployment) != (p.experiment, p.name):
        reasons.append(f"the lock is for {lock.experiment}/{lock.deployment}, not {p.experiment}/{p.name}")
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
        if entry.config_sha256 != expected_config_sha256(m, p):
            reasons.append(f"model {name!r}: its config.pbtxt changed (batching, tensors, instances, ...)")
    return reasons
