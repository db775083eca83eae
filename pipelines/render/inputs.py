"""The edge of rendering: every file a renderer depends on, read once into frozen objects.

Renderers are pure functions of typed configuration: they touch no file system, network or
clock (``tests/render/test_pure.py`` renders the whole tree with file access patched to fail).
What they need beyond the :class:`~pipelines.config.tree.Tree` is read here, by the caller
(``sonic render``, the demo, the benchmarks), and passed in:

- the **lock** of each deployment (``locks/<name>.repository.lock.json``): which snapshot to mount;
- the sha256 of each **supplied config.pbtxt** (``models[].configFile``): whether that lock is
  still current (:func:`pipelines.modelrepo.freshness.stale_reasons`);
- the **reference files** of ``checks.models[].reference``: the check spec ConfigMap carries them;
- the **repository settings** (``gitops/repository.yaml``, :mod:`pipelines.config.repository`),
  read by the caller, which reports its errors as configuration errors.

Example::

    tree = load_tree(root)
    files = render_tree(tree, read_inputs(tree, load_repository(root)))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import checkspec, names
from pipelines.config.model import Placement
from pipelines.config.repository import DEFAULT, Repository
from pipelines.config.tree import Tree
from pipelines.modelrepo.freshness import supplied_config_sha256
from pipelines.modelrepo.lock import Lock, lock_path, read_lock
from pipelines.render.errors import RenderError, RenderProblem, problem

# A deployment at a site: (site, "experiment/name").
Key = tuple[str, str]


def key(p: Placement) -> Key:
    """The key of ``p`` in :attr:`RenderInputs.deployments`."""
    return (p.site, names.deployment_ref(p))


@dataclass(frozen=True)
class DeploymentInputs:
    """What rendering one deployment at one site needs besides its configuration."""

    lock: Lock | None = None
    # Model name -> sha256 of its supplied config.pbtxt (None when unreadable); models without configFile are absent.
    config_sha256: Mapping[str, str | None] = field(default_factory=dict)
    # Declared path of each checks.models[].reference file -> its content.
    references: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderInputs:
    """Everything :func:`pipelines.render.render_tree` needs besides the tree."""

    repository: Repository = DEFAULT
    deployments: Mapping[Key, DeploymentInputs] = field(default_factory=dict)
    # Deployments whose files could not be read: why (reported by render_tree with its own problems).
    problems: Mapping[Key, tuple[RenderProblem, ...]] = field(default_factory=dict)


def read_lock_of(p: Placement) -> Lock | None:
    """The committed lock of ``p`` (None when there is none).

    Raises:
        RenderError: the lock file exists but cannot be read or parsed.
    """
    try:
        return read_lock(p.source, p.name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise problem(
            p, f"unreadable lock file ({exc}): run `sonic build-models` again", lock_path(p.source, p.name)
        ) from None


def read_deployment_inputs(p: Placement, lock: Lock | None) -> DeploymentInputs:
    """The files ``p`` depends on (but its lock, given): supplied config digests and reference files.

    Raises:
        RenderError: a reference file cannot be read.
    """
    try:
        references = checkspec.read_references(p)
    except checkspec.SpecError as exc:
        raise problem(p, str(exc)) from None
    return DeploymentInputs(lock, supplied_config_sha256(p), references)


def read_inputs(tree: Tree, repository: Repository = DEFAULT) -> RenderInputs:
    """Read the inputs of every deployment of ``tree`` at every site; problems are kept, not raised."""
    deployments: dict[Key, DeploymentInputs] = {}
    problems: dict[Key, tuple[RenderProblem, ...]] = {}
    locks: dict[tuple[Path, str], Lock | None] = {}
    for site in sorted(tree.sites):
        for p in tree.placements_at(site):
            found: list[RenderProblem] = []
            lock: Lock | None = None
            try:
                where = (p.source, p.name)
                if where not in locks:
                    locks[where] = read_lock_of(p)
                lock = locks[where]
            except RenderError as exc:
                found.extend(exc.problems)
            try:
                deployments[key(p)] = read_deployment_inputs(p, lock)
            except RenderError as exc:
                found.extend(exc.problems)
            if found:
                deployments.pop(key(p), None)
                problems[key(p)] = tuple(found)
    return RenderInputs(repository, deployments, problems)


__all__ = [
    "DeploymentInputs",
    "RenderInputs",
    "key",
    "read_deployment_inputs",
    "read_inputs",
    "read_lock_of",
]
