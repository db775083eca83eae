"""The ResourceQuota and LimitRange of every namespace a site grants an experiment.

The quota is the site file's (``experiments.<name>.quota`` per namespace, ``gpuQuota`` for
each GPU resource of the site's classes), so what validation promised is what the API server
enforces: ``sonic validate`` has already checked that the namespace's deployments fit it at
their most (:mod:`pipelines.config.footprint`). CPU and memory bound requests and limits alike.

A quota on ``requests.cpu`` and the like makes the API server refuse any pod whose containers
do not all state them (ResourceQuota admission). Every container we render does; the
LimitRange gives defaults to any other (the Argo executor, should a controller lack the
``resources`` of pipelines.workflows.controller), equal to the executor's.

The GPU quota is experiment-wide in the site file; each namespace's ResourceQuota carries the
whole of it (an upper bound: validation enforces the sum over the experiment's namespaces).

These objects go to ``gitops/rendered/<site>/_namespaces/<namespace>/`` and are applied by the
site's administrators with the namespace (docs/gitops.md): no experiment's Application may
manage or prune them.
"""

from __future__ import annotations

from typing import Any

from pipelines.config import names
from pipelines.config.footprint import WORKFLOW_EXECUTOR
from pipelines.config.model import Site


def _labels(site: Site, experiment: str) -> dict[str, str]:
    return names.managed_labels(experiment=experiment, site=site.name)


def gpu_resources(site: Site) -> list[str]:
    """Extended resource names the site's GPU classes request (``nvidia.com/gpu``, ...)."""
    return sorted({cls.resource for cls in site.gpu_classes.values()})


def render_namespace_quota(site: Site, experiment: str, namespace: str) -> list[dict[str, Any]]:
    """The ResourceQuota and LimitRange of one namespace granted to ``experiment`` at ``site``."""
    grant = site.experiments[experiment]
    q = grant.quota
    hard: dict[str, str] = {
        "limits.cpu": q.cpu,
        "limits.memory": q.memory,
        "pods": str(q.pods),
        "requests.cpu": q.cpu,
        "requests.memory": q.memory,
    }
    for resource in gpu_resources(site):
        # Extended resources are quota'd by request only (they cannot be overcommitted).
        hard[f"requests.{resource}"] = str(grant.gpu_quota)
    meta = {"name": "", "namespace": namespace, "labels": _labels(site, experiment)}
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {**meta, "name": names.QUOTA_NAME},
        "spec": {"hard": dict(sorted(hard.items()))},
    }
    e = WORKFLOW_EXECUTOR
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {**meta, "name": names.LIMIT_RANGE_NAME},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": e.cpu_limit, "memory": e.memory_limit},
                    "defaultRequest": {"cpu": e.cpu, "memory": e.memory},
                }
            ]
        },
    }
    return [quota, limit_range]


def render_site_quotas(site: Site) -> dict[str, list[dict[str, Any]]]:
    """``{namespace directory: objects}`` for every namespace the site grants."""
    return {
        names.namespace_dir(site.name, ns): render_namespace_quota(site, exp, ns)
        for exp, grant in sorted(site.experiments.items())
        for ns in grant.namespaces
    }
