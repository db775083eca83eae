"""Small builders shared by the renderers: object metadata and container resources."""

from __future__ import annotations

from typing import Any

from pipelines.config.model import Resources, SiteDeployment
from pipelines.render import names


def meta(p: SiteDeployment, component: str, name: str, **annotations: str) -> dict[str, Any]:
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


def spread(p: SiteDeployment, component: str) -> list[dict[str, Any]]:
    """Prefer spreading the component's pods over nodes (never blocks scheduling)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": names.selector(p, component)},
        }
    ]
