"""Who owns which file of the repository, and which pull requests stay within one owner.

Three kinds of owner, by path:

    experiments/<experiment>/**        the experiment (experiment.yaml: owners)
    gitops/sites/<site>.yaml           the site (site file: admins; else the platform team)
    everything else                    the platform team (gitops/repository.yaml: platformTeam),
                                       in particular INFRASTRUCTURE_PATHS

and the files ``sonic render`` generates, which belong to whoever owns what they are generated
from: ``gitops/rendered/<site>/<experiment>/**`` to that experiment, that site or the platform
(``gitops/rendered/<site>/_namespaces/**``, the namespaces' quotas, to that site or the platform);
``gitops/argocd/<site>/**`` to that site, the platform, or an experiment whose
``experiment.yaml`` the pull request changes (its AppProject); ``.github/CODEOWNERS`` to the
platform, or an experiment or site whose owners the pull request changes. The render check
(``sonic render --check``) proves generated files follow from their sources; this module
decides whether one pull request may change them together.

A pull request may change the files of **one** owner, plus files generated from them. One that
mixes an experiment's files with another experiment's, a site's or the infrastructure is
refused, so each change is reviewed by the people it belongs to (.github/CODEOWNERS, generated
from the same rules, asks GitHub for those reviews).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from pipelines.config.layout import (
    ARGOCD_DIR,
    CODEOWNERS_FILE,
    EXPERIMENT_FILE,
    EXPERIMENTS_DIR,
    GITHUB_DIR,
    NAMESPACES_DIR,
    RENDERED_DIR,
    REPOSITORY_FILE,
    SITES_DIR,
    WORKFLOWS_DIR,
)

if TYPE_CHECKING:
    from pipelines.config.tree import Tree


# What decides which code the pipelines run, with which image and permissions: the platform
# team's alone (directories end with "/"). Everything else outside experiments/ and
# gitops/sites/ is the platform team's too; these are named in CODEOWNERS explicitly.
INFRASTRUCTURE_PATHS = (
    "pipelines/",
    "schemas/",
    REPOSITORY_FILE,
    f"{WORKFLOWS_DIR}/",
    f"{ARGOCD_DIR}/",
    f"{GITHUB_DIR}/",
    "scripts/",
    ".ci/",
    "tools/",
    "Dockerfile",
    "Makefile",
    "pyproject.toml",
)

OwnerKind = Literal["experiment", "site", "platform"]


@dataclass(frozen=True, order=True)
class Owner:
    """An experiment, a site, or the platform team (``name`` empty)."""

    kind: OwnerKind
    name: str = ""

    def __str__(self) -> str:
        return "the platform team" if self.kind == "platform" else f"{self.kind} {self.name!r}"


PLATFORM = Owner("platform")


def _parts(path: str) -> list[str]:
    return path.split("/")


def is_generated(path: str) -> bool:
    """Whether ``sonic render`` writes ``path`` (the render check compares it with a fresh render)."""
    return path == CODEOWNERS_FILE or path.startswith((f"{RENDERED_DIR}/", f"{ARGOCD_DIR}/"))


def source_owner(path: str) -> Owner:
    """The owner of a file someone writes by hand (repository-relative, ``/``-separated)."""
    parts = _parts(path)
    if parts[0] == EXPERIMENTS_DIR and len(parts) >= 3:
        return Owner("experiment", parts[1])
    if path.startswith(f"{SITES_DIR}/") and len(parts) == 3:
        return Owner("site", PurePosixPath(parts[2]).stem)
    return PLATFORM


def generated_owners(path: str, changed: Iterable[str]) -> set[Owner]:
    """Owners whose pull request may change the generated file ``path``, given every changed path."""
    changed = list(changed)
    parts = _parts(path)
    owners = {PLATFORM}
    changed_experiment_files = {
        Owner("experiment", _parts(c)[1])
        for c in changed
        if len(_parts(c)) == 3 and _parts(c)[0] == EXPERIMENTS_DIR and _parts(c)[2] == EXPERIMENT_FILE
    }
    if path.startswith(f"{RENDERED_DIR}/") and len(parts) >= 5 and parts[3] == NAMESPACES_DIR:
        owners |= {Owner("site", parts[2])}
    elif path.startswith(f"{RENDERED_DIR}/") and len(parts) >= 5:
        owners |= {Owner("site", parts[2]), Owner("experiment", parts[3])}
    elif path.startswith(f"{ARGOCD_DIR}/") and len(parts) >= 4:
        owners |= {Owner("site", parts[2]), *changed_experiment_files}
    elif path == CODEOWNERS_FILE:
        owners |= changed_experiment_files
        owners |= {source_owner(c) for c in changed if source_owner(c).kind == "site"}
    return owners


@dataclass
class OwnershipReport:
    """What a set of changed paths amounts to: whose change it is, and what breaks the rule."""

    sources: dict[Owner, list[str]] = field(default_factory=dict)  # hand-written files per owner
    strays: dict[str, set[Owner]] = field(default_factory=dict)  # generated file -> who may change it

    @property
    def owner(self) -> Owner:
        """The one owner of the change (the platform when only generated files changed)."""
        return next(iter(self.sources)) if len(self.sources) == 1 else PLATFORM

    @property
    def mixed(self) -> bool:
        return len(self.sources) > 1

    @property
    def ok(self) -> bool:
        return not self.mixed and not self.strays


def check_paths(changed: Iterable[str]) -> OwnershipReport:
    """Sort changed paths (repository-relative) by owner; generated ones must fit the change's owner."""
    paths = sorted(set(changed))
    report = OwnershipReport()
    for path in paths:
        if not is_generated(path):
            report.sources.setdefault(source_owner(path), []).append(path)
    report.sources = dict(sorted(report.sources.items()))
    if report.mixed:
        return report
    owner = report.owner
    for path in paths:
        if is_generated(path):
            allowed = generated_owners(path, paths)
            if owner not in allowed:
                report.strays[path] = allowed
    return report


HandlesOf = Callable[[Owner], tuple[str, ...]]


def describe(owner: Owner, handles_of: HandlesOf) -> str:
    """``experiment 'cms' (@cms-sw/sonic-conveners, @kpedro88)``."""
    handles = handles_of(owner)
    return f"{owner} ({', '.join(handles)})" if handles else f"{owner} (owners unknown: its file is invalid)"


def handles(tree: Tree, platform_team: str) -> HandlesOf:
    """The GitHub handles that own each owner's files in ``tree`` (as CODEOWNERS lists them)."""

    def of(owner: Owner) -> tuple[str, ...]:
        if owner.kind == "experiment":
            exp = tree.experiments.get(owner.name)
            return exp.owners if exp is not None else ()
        if owner.kind == "site":
            site = tree.sites.get(owner.name)
            if site is None:
                return ()
            return site.admins or (platform_team,)
        return (platform_team,)

    return of
