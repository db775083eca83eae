"""The committed GitOps tree, applied to a real API server the way Argo CD applies it.

Every object of every rendered deployment at every site, of ``gitops/argocd/`` and of
``gitops/workflows/`` goes through server-side apply (dry run, then for real) into namespaces
that enforce the Pod Security level the docs promise; applying it again must change nothing; and
every Deployment's pods must be admitted and scheduled onto the site's (fake) GPU nodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config.checked import load_tree
from pipelines.config.names import POD_SECURITY_LEVEL
from pipelines.local.processes import wait_until
from tests.support.controlplane import (
    ControlPlane,
    apply_object,
    ensure_namespace,
    object_path,
    provision_claims,
    site_prerequisites,
)

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"

# Objects whose dependants must exist first (a token Secret names its ServiceAccount).
ORDER = {"Namespace": 0, "CustomResourceDefinition": 0, "ServiceAccount": 1}


def documents(paths: list[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in paths:
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def rendered_dirs() -> list[Path]:
    return sorted(p.parent for p in GITOPS.glob("rendered/*/*/*/application.json"))


def cluster_groups() -> dict[str, list[tuple[Path, dict[str, Any]]]]:
    """Every object Argo CD (or a site admin) applies, by the cluster it goes to.

    Each site is its own cluster: its rendered deployments, its Argo CD objects and the model
    build it runs. The pipelines' cluster holds the rest of gitops/workflows. Sites may reuse a
    namespace and object name (two sites' ``cms/build-model-repository``), so the test applies
    one cluster's objects at a time, as the real clusters would hold them.
    """
    groups: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for directory in rendered_dirs():
        app = json.loads((directory / "application.json").read_text())
        for path, doc in documents(sorted(directory.glob("*.yaml"))):
            # Argo CD applies into the Application's destination namespace.
            doc.setdefault("metadata", {}).setdefault("namespace", app["namespace"])
            groups.setdefault(app["site"], []).append((path, doc))
    for site in sorted(p.name for p in GITOPS.glob("argocd/*")):
        groups.setdefault(site, []).extend(documents(sorted(GITOPS.glob(f"argocd/{site}/*.yaml"))))
        groups[site].extend(documents([GITOPS / "workflows" / f"build-model-repository-{site}.yaml"]))
    site_files = {p for p in GITOPS.glob("workflows/build-model-repository-*.yaml")}
    groups["pipelines"] = list(documents(sorted(set(GITOPS.glob("workflows/*.yaml")) - site_files)))
    return {
        name: sorted(objs, key=lambda po: ORDER.get(po[1]["kind"], 2))
        for name, objs in sorted(groups.items())
    }


def namespaces(objs: list[tuple[Path, dict[str, Any]]]) -> set[str]:
    return {o["metadata"]["namespace"] for _, o in objs if o["metadata"].get("namespace")}


def pss_labels() -> dict[str, str]:
    """The Pod Security Standard labels docs/gitops.md asks site admins to set."""
    return {f"pod-security.kubernetes.io/{mode}": POD_SECURITY_LEVEL for mode in ("enforce", "audit", "warn")}


@dataclass
class Applied:
    """One cluster's objects as applied, and what a second apply would have changed."""

    objects: list[tuple[Path, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def applied(control_plane: ControlPlane) -> dict[str, Applied]:
    """Apply each cluster's objects (dry run first, then for real, then a second dry run)."""
    out: dict[str, Applied] = {}
    sites = load_tree(ROOT).sites
    for cluster, objs in cluster_groups().items():
        for ns in sorted(namespaces(objs)):
            ensure_namespace(control_plane, ns, pss_labels())
        if cluster in sites:
            for prerequisite in site_prerequisites(sites[cluster]):
                status, body = apply_object(control_plane, prerequisite, field_manager="site-admin")
                assert status in (200, 201), f"site {cluster} prerequisite: {status} {_msg(body)}"
        errors = []
        for path, obj in objs:
            status, body = apply_object(control_plane, obj, dry_run=True)
            if status not in (200, 201):
                errors.append(f"{_where(path, obj)} (dry run): {status} {_msg(body)}")
        assert not errors, f"cluster {cluster}:\n" + "\n".join(errors)
        result = out[cluster] = Applied()
        for path, obj in objs:
            status, body = apply_object(control_plane, obj)
            if status not in (200, 201):
                errors.append(f"{_where(path, obj)}: {status} {_msg(body)}")
            result.objects.append((path, obj, body))
        assert not errors, f"cluster {cluster}:\n" + "\n".join(errors)
        result.drift = _drift(control_plane, objs)
    provision_claims(control_plane)
    return out


def _where(path: Path, obj: dict[str, Any]) -> str:
    return f"{path.relative_to(ROOT)} {obj['kind']}/{obj['metadata']['name']}"


def _drift(cp: ControlPlane, objs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """What Argo CD's self-heal would change on its next pass (should be nothing).

    Applying the same object again (a dry run, nothing is written) must give back exactly the
    live object: otherwise a controller and our manifest fight over a field and Argo CD reports
    the Application OutOfSync for ever. Controllers' own additions (status, finalizers,
    annotations they set) are theirs and are not a difference.
    """
    changed = []
    for path, obj in objs:
        live_status, live = cp.request("GET", object_path(cp, obj))
        status, again = apply_object(cp, obj, dry_run=True)
        assert live_status == 200 and status == 200, f"{_where(path, obj)}: {status} {_msg(again)}"
        if _comparable(live) != _comparable(again):
            changed.append(f"{_where(path, obj)}: {_diff(live, again)}")
    return changed


def _msg(body: Any) -> str:
    return body.get("message", str(body)) if isinstance(body, dict) else str(body)


def test_every_object_is_accepted(applied: dict[str, Applied]) -> None:
    kinds = {o["kind"] for a in applied.values() for _, o, _ in a.objects}
    # The tree really holds what a site runs (not an empty glob).
    assert {"Deployment", "Service", "NetworkPolicy", "WorkflowTemplate", "ApplicationSet"} <= kinds
    placements = [p for d in load_tree(ROOT).deployments for p in d.placements]
    assert len(rendered_dirs()) == len(placements) > 0
    assert {p.site for p in placements} | {"pipelines"} == set(applied)


def test_applying_again_changes_nothing(applied: dict[str, Applied]) -> None:
    drift = [d for a in applied.values() for d in a.drift]
    assert not drift, "re-applying would change:\n" + "\n".join(drift)


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {
        k: v
        for k, v in obj["metadata"].items()
        if k not in ("managedFields", "resourceVersion", "generation")
    }
    return out


def _diff(live: dict[str, Any], again: dict[str, Any]) -> str:
    a, b = _comparable(live), _comparable(again)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(
        f"{k}: live {json.dumps(a.get(k))[:300]} -> applied {json.dumps(b.get(k))[:300]}" for k in keys
    )


def test_every_deployment_pod_is_admitted_and_scheduled(
    control_plane: ControlPlane, applied: dict[str, Applied]
) -> None:
    """Pod Security admission, quotas, ServiceAccounts, GPU requests, node selectors and taints.

    The ReplicaSet controller creates the pods (admission runs then, not on the Deployment), the
    scheduler places them on the fake GPU nodes; a Deployment at zero replicas (scale to zero)
    has nothing to schedule.
    """
    deployments = [
        (o["metadata"]["namespace"], o["metadata"]["name"], o["spec"].get("replicas", 1))
        for a in applied.values()
        for path, o, _ in a.objects
        if o["kind"] == "Deployment" and "rendered" in path.parts
    ]
    assert deployments

    def problems() -> list[str]:
        out = []
        for ns, name, replicas in deployments:
            status, dep = control_plane.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
            ready = (dep.get("status") or {}).get("readyReplicas", 0) if status == 200 else 0
            if ready < replicas:
                conds = [
                    f"{c['type']}={c['status']} {c.get('message', '')}"
                    for c in (dep.get("status") or {}).get("conditions", [])
                ]
                out.append(f"{ns}/{name}: {ready}/{replicas} ready; {'; '.join(conds)}")
        return out

    try:
        wait_until("every Deployment ready", lambda: not problems(), timeout=60, interval=0.5)
    except Exception:
        pending = problems()
        events = _warning_events(control_plane)
        pytest.fail("pods not running:\n" + "\n".join(pending) + "\nwarning events:\n" + events)


def _warning_events(cp: ControlPlane) -> str:
    _status, body = cp.request("GET", "/api/v1/events?fieldSelector=type%3DWarning")
    return "\n".join(
        f"{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}: {e['reason']}: {e['message']}"
        for e in (body or {}).get("items", [])
    )[-4000:]


def test_namespaces_really_enforce_pod_security(
    control_plane: ControlPlane, applied: dict[str, Applied]
) -> None:
    """The tier is not a rubber stamp: a pod that breaks the promised level is refused."""
    ns = next(
        o["metadata"]["namespace"] for a in applied.values() for p, o, _ in a.objects if "rendered" in p.parts
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "breaks-pod-security", "namespace": ns},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        },
    }
    status, body = apply_object(control_plane, pod, dry_run=True)
    assert status == 403, body
    assert f'violates PodSecurity "{POD_SECURITY_LEVEL}:latest"' in _msg(body)
