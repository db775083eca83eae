"""Small builders shared by the renderers: object metadata, container resources, common volumes."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from pipelines.config.model import Resources, Site, SiteDeployment
from pipelines.config.quantity import parse_quantity
from pipelines.render import names
from pipelines.render.envoy import PROMETHEUS_TOKEN_PATH


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


def quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity that passed the schema: "500m" -> 0.5, "4Gi" -> 4294967296."""
    return parse_quantity(text)


def whole_cpus(r: Resources) -> int | None:
    """The CPU limit (the request when no limit is set) rounded up to whole cores; None if neither."""
    cpu = r.cpu_limit or r.cpu
    return max(1, math.ceil(quantity(cpu))) if cpu else None


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


def prometheus_token_volume(p: SiteDeployment, site: Site) -> tuple[dict[str, Any], dict[str, Any]] | None:
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
