"""The rendered ResourceQuota of each namespace covers what its rendered pods take at their most.

Counted from the rendered objects themselves (Deployments at maximum replicas plus their
rollingUpdate surge, the PostSync Job, the committed model-build WorkflowTemplate plus Argo's
executor containers as the controller configuration gives them), not from
pipelines.config.footprint, and then compared both with the rendered quota (it must fit) and
with the footprint the validation counts (it must be the same number, so the two cannot drift).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
import yaml

from pipelines.config import names
from pipelines.config.footprint import deployment_footprint
from pipelines.config.model import Placement, Site
from pipelines.config.quantity import parse_quantity
from pipelines.config.tree import Tree
from pipelines.render import read_inputs, render_site_deployment, render_tree
from pipelines.render.quota import render_namespace_quota
from pipelines.workflows.controller import EXECUTOR
from tests.conftest import FIXTURE
from tests.render.support import inputs_for, tree

KEYS = ("requests.cpu", "limits.cpu", "requests.memory", "limits.memory")


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def _pod_use(containers: list[dict[str, Any]]) -> dict[str, Decimal]:
    """What a pod's containers take (every one counted; requests and limits, GPUs by request)."""
    use: dict[str, Decimal] = defaultdict(Decimal)
    for c in containers:
        for kind in ("requests", "limits"):
            for resource, value in c["resources"][kind].items():
                if kind == "limits" and resource not in ("cpu", "memory"):
                    continue
                use[f"{kind}.{resource}"] += parse_quantity(str(value))
    use["pods"] = Decimal(1)
    return use


def _add(total: dict[str, Decimal], use: dict[str, Decimal], times: int = 1) -> None:
    for key, value in use.items():
        total[key] += value * times


def _max_replicas(p: Placement, deployment: dict[str, Any]) -> int:
    component = deployment["metadata"]["labels"]["app.kubernetes.io/name"]
    at_most = p.max_replicas if component == "triton" else deployment["spec"]["replicas"]
    strategy = deployment["spec"]["strategy"]
    surge = 0 if strategy["type"] == "Recreate" else int(strategy["rollingUpdate"]["maxSurge"])
    return int(at_most) + surge


def _build_pod(site: str, namespace: str) -> dict[str, Decimal] | None:
    """The largest step pod of the namespace's committed build template, executor containers added."""
    path = FIXTURE / "gitops" / "workflows" / f"build-model-repository-{site}.yaml"
    if not path.is_file():
        return None
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "WorkflowTemplate" and doc["metadata"]["namespace"] == namespace:
            executor = {"name": "executor", "resources": EXECUTOR["resources"]}
            pods = [
                _pod_use([t["container"], executor, executor])  # init and wait
                for t in doc["spec"]["templates"]
                if "container" in t
            ]
            return max(pods, key=lambda u: u["limits.memory"])
    return None


def rendered_use(t: Tree, site: Site, namespace: str) -> tuple[dict[str, Decimal], list[Placement]]:
    total: dict[str, Decimal] = defaultdict(Decimal)
    placements = [p for p in t.placements_at(site.name) if p.namespace == namespace]
    for p in placements:
        for obj in render_site_deployment(p, site, inputs_for(p)):
            if obj["kind"] == "Deployment":
                _add(total, _pod_use(_containers(obj["spec"]["template"]["spec"])), _max_replicas(p, obj))
            elif obj["kind"] == "Job":
                _add(total, _pod_use(_containers(obj["spec"]["template"]["spec"])))
        if any(m.artifact for m in p.models):
            build = _build_pod(site.name, namespace)
            if site.storage.snapshots is not None:
                assert build is not None, f"{namespace} at {site.name}: no build template"
                _add(total, build)
    return total, placements


NAMESPACES = [
    (site_name, ns)
    for site_name, site in sorted(tree().sites.items())
    for grant in site.experiments.values()
    for ns in grant.namespaces
    if any(p.namespace == ns for p in tree().placements_at(site_name))
]


@pytest.mark.parametrize(("site_name", "namespace"), NAMESPACES, ids=lambda v: str(v))
def test_the_quota_covers_every_rendered_pod_at_its_most(site_name: str, namespace: str) -> None:
    t = tree()
    site = t.sites[site_name]
    used, placements = rendered_use(t, site, namespace)
    assert placements and used["pods"] > 0
    exp = placements[0].experiment
    quota = next(o for o in render_namespace_quota(site, exp, namespace) if o["kind"] == "ResourceQuota")
    hard = {k: parse_quantity(str(v)) for k, v in quota["spec"]["hard"].items()}
    for key, value in used.items():
        assert key in hard, f"{key} is used but not in the quota"
        assert value <= hard[key], f"{namespace} at {site_name}: {key} {value} > quota {hard[key]}"
    # And the validation counts exactly this (so a renderer change cannot slip past the rule).
    counted = [deployment_footprint(p, site) for p in placements]
    assert sum(f.pods for f in counted) == used["pods"]
    assert sum(f.requests_cpu for f in counted) == used["requests.cpu"]
    assert sum(f.limits_cpu for f in counted) == used["limits.cpu"]
    assert sum(f.requests_memory for f in counted) == used["requests.memory"]
    assert sum(f.limits_memory for f in counted) == used["limits.memory"]


def test_every_rendered_container_states_requests_and_limits() -> None:
    """ResourceQuota admission refuses a pod with any container lacking what the quota bounds."""
    files = render_tree(tree(), read_inputs(tree()))
    seen = 0
    for path, text in files.items():
        if not path.endswith(".yaml") or "/_namespaces/" in path or not path.startswith("gitops/rendered/"):
            continue
        for obj in yaml.safe_load_all(text):
            spec = (obj or {}).get("spec", {})
            pod = spec.get("template", {}).get("spec")
            if obj and obj["kind"] in ("Deployment", "Job"):
                for c in _containers(pod):
                    seen += 1
                    for kind in ("requests", "limits"):
                        assert {"cpu", "memory"} <= set(c["resources"][kind]), (path, c["name"], kind)
    assert seen > 10
    for path in sorted((FIXTURE / "gitops" / "workflows").glob("build-model-repository-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for t in (doc or {}).get("spec", {}).get("templates", []):
                if "container" in t:
                    for kind in ("requests", "limits"):
                        assert {"cpu", "memory"} <= set(t["container"]["resources"][kind]), (path, t["name"])


def test_the_limit_range_defaults_are_the_executor_resources() -> None:
    t = tree()
    site = t.sites["nautilus"]
    limit_range = next(o for o in render_namespace_quota(site, "cms", "cms") if o["kind"] == "LimitRange")
    (limits,) = limit_range["spec"]["limits"]
    assert limits["type"] == "Container"
    assert limits["default"] == EXECUTOR["resources"]["limits"]
    assert limits["defaultRequest"] == EXECUTOR["resources"]["requests"]


def test_the_quota_is_the_site_files() -> None:
    site = tree().sites["geddes"]
    quota = next(o for o in render_namespace_quota(site, "cms", "cms-sonic") if o["kind"] == "ResourceQuota")
    assert quota["metadata"] == {
        "name": names.QUOTA_NAME,
        "namespace": "cms-sonic",
        "labels": {
            "app.kubernetes.io/part-of": "sonic",
            "app.kubernetes.io/managed-by": names.MANAGED_BY,
            "sonic.fastml.org/experiment": "cms",
            "sonic.fastml.org/site": "geddes",
        },
    }
    assert quota["spec"]["hard"] == {
        "limits.cpu": "32",
        "limits.memory": "96Gi",
        "pods": "30",
        "requests.cpu": "32",
        "requests.memory": "96Gi",
        "requests.nvidia.com/gpu": "12",
    }


def test_every_granted_namespace_gets_its_quota_directory() -> None:
    t = tree()
    files = render_tree(t, read_inputs(t))
    for site in t.sites.values():
        for grant in site.experiments.values():
            for ns in grant.namespaces:
                directory = names.namespace_dir(site.name, ns)
                kustomization = yaml.safe_load(files[f"{directory}/kustomization.yaml"])
                assert kustomization["resources"] == ["limitrange.yaml", "resourcequota.yaml"]
    # Never an Application: the site's admins apply these, no experiment's Argo CD project may.
    assert not [p for p in files if "/_namespaces/" in p and p.endswith("application.json")]


def test_the_check_detects_a_quota_too_small() -> None:
    """The comparison above can fail: a quota smaller than what the pods take is caught."""
    t = tree()
    site = t.sites["geddes"]
    used, _ = rendered_use(t, site, "cms-sonic")
    small = site.model_copy(
        update={
            "experiments": {
                "cms": site.experiments["cms"].model_copy(
                    update={"quota": site.experiments["cms"].quota.model_copy(update={"cpu": "1"})}
                )
            }
        }
    )
    quota = next(o for o in render_namespace_quota(small, "cms", "cms-sonic") if o["kind"] == "ResourceQuota")
    assert used["limits.cpu"] > parse_quantity(quota["spec"]["hard"]["limits.cpu"])
