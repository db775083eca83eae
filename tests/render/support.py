"""Shared helpers of the renderer tests (plain functions, cached: rendering is pure).

The deployments are those of the frozen fixture tree (tests/fixtures/tree), not the live examples.
The ``minimal`` deployment is rendered with a lock built here, so the tests do not depend on a
committed lock file (``sonic build-models`` output).
"""

from __future__ import annotations

import functools
from typing import Any

import yaml

from pipelines.config import Placement, Site, Tree, load_tree
from pipelines.modelrepo.freshness import expected_config_sha256
from pipelines.modelrepo.lock import Lock, LockedModel, content_digest
from pipelines.render import DeploymentInputs, render_site_deployment
from pipelines.render.inputs import read_deployment_inputs
from tests.conftest import FIXTURE, SHARED
from tests.conftest import ROOT as ROOT  # re-exported: the repository itself (docs, schemas, tools)

CRDS = SHARED / "crds"

# Which CRD file defines each custom kind the renderers produce.
CRD_FILES = {
    "ScaledObject": "keda.sh/scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh/triggerauthentications.yaml",
    "ServiceMonitor": "monitoring.coreos.com/servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com/podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com/prometheusrules.yaml",
    "Application": "argoproj.io/applications.yaml",
    "ApplicationSet": "argoproj.io/applicationsets.yaml",
    "AppProject": "argoproj.io/appprojects.yaml",
}


@functools.cache
def tree() -> Tree:
    """The fixture tree, loaded once."""
    return load_tree(FIXTURE)


def lock_for(p: Placement) -> Lock | None:
    """A well-formed lock for ``p``'s artifact models (None when it has none)."""
    built = [m for m in p.models if m.artifact is not None]
    if not built:
        return None
    models = tuple(
        LockedModel(
            name=m.name,
            versions=tuple(m.versions),
            source=m.artifact.source,
            sha256=m.artifact.sha256,
            size=m.artifact.size or 1,
            config_sha256=expected_config_sha256(m, p) or "0" * 64,
        )
        for m in sorted(built, key=lambda m: m.name)
        if m.artifact is not None
    )
    return Lock(p.experiment, p.name, content_digest(p.experiment, p.name, models), models)


def inputs_for(p: Placement) -> DeploymentInputs:
    """What rendering ``p`` reads (its supplied configs and reference files), with the lock of :func:`lock_for`."""
    return read_deployment_inputs(p, lock_for(p))


def unlocked_inputs(p: Placement) -> DeploymentInputs:
    """What rendering ``p`` reads, without a lock (for deployments with no artifact model)."""
    return read_deployment_inputs(p, None)


def placements() -> list[tuple[Placement, Site]]:
    t = tree()
    return [(p, t.sites[p.site]) for p in t.placements_at()]


def placement(site: str, name: str) -> tuple[Placement, Site]:
    for p, s in placements():
        if p.site == site and p.name == name:
            return p, s
    raise KeyError((site, name))


def ident(p: Placement) -> str:
    return f"{p.site}/{p.experiment}/{p.name}"


@functools.cache
def _rendered(site: str, name: str) -> tuple[dict[str, Any], ...]:
    p, s = placement(site, name)
    return tuple(render_site_deployment(p, s, inputs_for(p)))


def rendered(p: Placement) -> list[dict[str, Any]]:
    """Fresh copies of the objects ``p`` renders (tests may modify them)."""
    import copy

    return copy.deepcopy(list(_rendered(p.site, p.name)))


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    """(deployment id, object) for every example deployment at every site."""
    return [(ident(p), obj) for p, _ in placements() for obj in rendered(p)]


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pods(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload object, or None."""
    if obj["kind"] in ("Deployment", "Job"):
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


@functools.cache
def crd_schema(kind: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of ``kind`` at ``version`` from ../shared/crds (parsed once)."""
    path = CRDS / CRD_FILES[kind]
    with path.open("rb") as fh:
        crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(f"{kind} has no version {version} in {path}")
