"""The committed GitOps tree, applied to a real API server the way Argo CD applies it.

Every object of every rendered deployment at every site, of ``gitops/argocd/`` and of
``gitops/workflows/`` goes through server-side apply (dry run, then for real) into namespaces
that enforce the Pod Security level the docs promise; applying it again must change nothing; and
every Deployment's pods must be admitted and scheduled onto the site's (fake) GPU nodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.render.names import POD_SECURITY_LEVEL
from pipelines.local.processes import wait_until
from tests.support.controlplane import ControlPlane, apply_object, ensure_namespace

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


def tree_objects() -> list[tuple[Path, dict[str, Any]]]:
    """Every object Argo CD (or a site admin, for gitops/argocd and gitops/workflows) applies."""
    objs: list[tuple[Path, dict[str, Any]]] = []
    for directory in rendered_dirs():
        app = json.loads((directory / "application.json").read_text())
        for path, doc in documents(sorted(directory.glob("*.yaml"))):
            # Argo CD applies into the Application's destination namespace.
            doc.setdefault("metadata", {}).setdefault("namespace", app["namespace"])
            objs.append((path, doc))
    objs += documents(sorted(GITOPS.glob("argocd/*/*.yaml")))
    objs += documents(sorted(GITOPS.glob("workflows/*.yaml")))
    return sorted(objs, key=lambda po: ORDER.get(po[1]["kind"], 2))


def namespaces(objs: list[tuple[Path, dict[str, Any]]]) -> set[str]:
    return {o["metadata"]["namespace"] for _, o in objs if o["metadata"].get("namespace")}


def pss_labels() -> dict[str, str]:
    """The Pod Security Standard labels docs/gitops.md asks site admins to set."""
    return {
        f"pod-security.kubernetes.io/{mode}": POD_SECURITY_LEVEL
        for mode in ("enforce", "audit", "warn")
    }


@pytest.fixture(scope="module")
def applied(control_plane: ControlPlane) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """Apply the whole tree once (dry run first); returns (file, object, server's answer)."""
    objs = tree_objects()
    for ns in sorted(namespaces(objs)):
        ensure_namespace(control_plane, ns, pss_labels())
    errors = []
    for path, obj in objs:
        status, body = apply_object(control_plane, obj, dry_run=True)
        if status not in (200, 201):
            errors.append(f"{path.relative_to(ROOT)} {obj['kind']}/{obj['metadata']['name']} (dry run): {status} {_msg(body)}")
    assert not errors, "\n".join(errors)
    answers = []
    for path, obj in objs:
        status, body = apply_object(control_plane, obj)
        if status not in (200, 201):
            errors.append(f"{path.relative_to(ROOT)} {obj['kind']}/{obj['metadata']['name']}: {status} {_msg(body)}")
        answers.append((path, obj, body))
    assert not errors, "\n".join(errors)
    return answers


def _msg(body: Any) -> str:
    return body.get("message", str(body)) if isinstance(body, dict) else str(body)


def test_every_object_is_accepted(applied: list[tuple[Path, dict[str, Any], dict[str, Any]]]) -> None:
    kinds = {o["kind"] for _, o, _ in applied}
    # The tree really holds what a site runs (not an empty glob).
    assert {"Deployment", "Service", "NetworkPolicy", "WorkflowTemplate", "ApplicationSet"} <= kinds
    assert len(rendered_dirs()) >= 8


def test_applying_again_changes_nothing(
    control_plane: ControlPlane, applied: list[tuple[Path, dict[str, Any], dict[str, Any]]]
) -> None:
    changed = []
    for path, obj, first in applied:
        status, again = apply_object(control_plane, obj)
        assert status == 200, f"{path}: {status} {_msg(again)}"
        before, after = first["metadata"], again["metadata"]
        # Controllers may write status (a new resourceVersion); a spec change bumps generation,
        # and objects without a generation must not be rewritten at all.
        if "generation" in before:
            same = before["generation"] == after["generation"]
        else:
            same = before["resourceVersion"] == after["resourceVersion"]
        if not same:
            changed.append(f"{path.relative_to(ROOT)} {obj['kind']}/{obj['metadata']['name']}")
    assert not changed, "re-applying changed: " + ", ".join(changed)


def test_every_deployment_pod_is_admitted_and_scheduled(
    control_plane: ControlPlane, applied: list[tuple[Path, dict[str, Any], dict[str, Any]]]
) -> None:
    """Pod Security admission, quotas, ServiceAccounts, GPU requests, node selectors and taints.

    The ReplicaSet controller creates the pods (admission runs then, not on the Deployment), the
    scheduler places them on the fake GPU nodes; a Deployment at zero replicas (scale to zero)
    has nothing to schedule.
    """
    deployments = [
        (o["metadata"]["namespace"], o["metadata"]["name"], o["spec"].get("replicas", 1))
        for _, o, _ in applied
        if o["kind"] == "Deployment"
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
    status, body = cp.request("GET", "/api/v1/events?fieldSelector=type%3DWarning")
    return "\n".join(
        f"{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}: {e['reason']}: {e['message']}"
        for e in (body or {}).get("items", [])
    )[-4000:]
