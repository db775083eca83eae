"""Small builders shared by the renderers: object metadata, container resources, common volumes."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from pipelines.config import names
from pipelines.config.model import Affinity, NodeSelectorTerm, Placement, Resources, Site, Toleration
from pipelines.config.quantity import parse_quantity
from pipelines.render.envoy.gate import PROMETHEUS_TOKEN_PATH


def meta(p: Placement, component: str, name: str, **annotations: str) -> dict[str, Any]:
    """``metadata`` of a namespaced object of one component of ``p``."""
    out: dict[str, Any] = {"name": name, "namespace": p.namespace, "labels": names.labels(p, component)}
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def resources(r: Resources, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Requests and limits (limits default to the requests); ``extra`` (GPUs) goes in both."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if r.cpu:
        requests["cpu"] = r.cpu
    if r.memory:
        requests["memory"] = r.memory
    if r.cpu_limit or r.cpu:
        limits["cpu"] = r.cpu_limit or r.cpu
    if r.memory_limit or r.memory:
        limits["memory"] = r.memory_limit or r.memory
    for key, value in (extra or {}).items():
        requests[key] = value
        limits[key] = value
    return {"requests": requests, "limits": limits}


def quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity that passed the schema: "500m" -> 0.5, "4Gi" -> 4294967296."""
    return parse_quantity(text)


def whole_cpus(r: Resources) -> int | None:
    """The CPU limit (the request when no limit is set) rounded up to whole cores; None if neither."""
    cpu = r.cpu_limit or r.cpu
    return max(1, math.ceil(quantity(cpu))) if cpu else None


def spread(p: Placement, component: str) -> list[dict[str, Any]]:
    """Prefer spreading the component's pods over nodes (never blocks scheduling)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": names.selector(p, component)},
        }
    ]


def prometheus_token_volume(p: Placement, site: Site) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(volumeMount, volume) putting the site's Prometheus token Secret at PROMETHEUS_TOKEN_PATH,
    read-only; None when the deployment's Prometheus (names.prometheus_url) needs no token. Only
    the reference is rendered."""
    auth = names.prometheus_auth(p, site)
    if auth is None:
        return None
    token_dir, token_file = PROMETHEUS_TOKEN_PATH.rsplit("/", 1)
    mount = {"name": "prometheus-token", "mountPath": token_dir, "readOnly": True}
    volume = {
        "name": "prometheus-token",
        "secret": {
            "secretName": auth.secret_ref.name,
            "items": [{"key": auth.secret_ref.key, "path": token_file}],
            "defaultMode": 0o440,
        },
    }
    return mount, volume


REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def tolerations(*groups: tuple[Toleration, ...]) -> list[dict[str, Any]]:
    """The tolerations of every group in order, each once (a deployment may repeat its GPU class's)."""
    out: list[dict[str, Any]] = []
    for group in groups:
        for t in group:
            entry = t.model_dump(mode="json", by_alias=True, exclude_none=True)
            if entry not in out:
                out.append(entry)
    return out


def affinity(declared: Affinity | None, required_term: NodeSelectorTerm | None = None) -> dict[str, Any]:
    """A pod's ``affinity``: the declared one, with ``required_term`` (a GPU class's) also required.

    Required node selector terms are ORed by Kubernetes and the requirements inside one term
    ANDed, so "the class's term AND one of the declared terms" puts the class's requirements into
    every declared term. Preferred terms and pod (anti-)affinity are the declared ones. Empty
    when there is nothing to require or prefer.
    """
    out: dict[str, Any] = (
        declared.model_dump(mode="json", by_alias=True, exclude_defaults=True) if declared else {}
    )
    if required_term is None:
        return out
    term = required_term.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    node = out.setdefault("nodeAffinity", {})
    required = node.get(REQUIRED)
    if required is None:
        node[REQUIRED] = {"nodeSelectorTerms": [term]}
        return out
    merged = []
    for own in required["nodeSelectorTerms"]:
        both = dict(own)
        for field in ("matchExpressions", "matchFields"):
            if term.get(field) or own.get(field):
                both[field] = [*term.get(field, []), *own.get(field, [])]
        merged.append(both)
    required["nodeSelectorTerms"] = merged
    return out
