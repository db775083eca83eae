"""The rendered ResourceQuota and LimitRange, enforced by the real API server's admission.

For each namespace a site grants that runs deployments, a fresh namespace (``q-<site>-<ns>``,
so the sites' shared namespace names cannot mix their quotas) gets the namespace's rendered
ResourceQuota and LimitRange, then the rendered ServiceAccounts, Deployments (scaled to their
maximum replicas: ``autoscaling.max`` for Triton) and check Job of every deployment there.
Every pod must be created (ResourceQuota admission would refuse one that does not fit, and the
ReplicaSet controller would report FailedCreate), a pod asking for more than is left is
refused, and a container without resources gets the LimitRange's defaults.

Not covered here: rolling-update surge pods (counted by validation, tests/render/test_quota.py)
and the model-build workflow pods (no workflow is submitted in this test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import names
from pipelines.config.checked import load_tree
from pipelines.config.names import POD_SECURITY_LEVEL
from pipelines.local.processes import wait_until
from tests.support.controlplane import ControlPlane, apply_object, ensure_namespace

ROOT = Path(__file__).resolve().parents[2]
RENDERED = ROOT / "gitops" / "rendered"
KINDS = ("ServiceAccount", "Deployment", "Job")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _moved(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    out["metadata"]["namespace"] = namespace
    out["metadata"].pop("annotations", None)  # Argo CD's waves and hooks mean nothing here
    return out


def cases() -> list[tuple[str, str]]:
    tree = load_tree(ROOT)
    return sorted({(p.site, p.namespace) for d in tree.deployments for p in d.placements})


def _pss() -> dict[str, str]:
    return {f"pod-security.kubernetes.io/{m}": POD_SECURITY_LEVEL for m in ("enforce", "audit", "warn")}


def _test_namespace(site: str, namespace: str) -> str:
    return f"q-{site}-{namespace}"[:63].rstrip("-")


def _quota_status(cp: ControlPlane, ns: str) -> dict[str, Any]:
    status, body = cp.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{names.QUOTA_NAME}")
    assert status == 200, body
    return dict(body.get("status") or {})


def _setup(cp: ControlPlane, site: str, namespace: str) -> tuple[str, dict[str, int]]:
    """The namespace with its quota and every deployment there at its most; (namespace, {Deployment: replicas})."""
    ns = _test_namespace(site, namespace)
    ensure_namespace(cp, ns, _pss())
    directory = RENDERED / site / names.NAMESPACES_DIR / namespace
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in _docs(path):
            status, body = apply_object(cp, _moved(obj, ns), field_manager="site-admin")
            assert status in (200, 201), f"{path}: {status} {body}"
    # ResourceQuota admission refuses every pod until the quota controller has filled in status.
    wait_until(
        f"quota of {ns} computed",
        lambda: bool(_quota_status(cp, ns).get("hard")),
        timeout=30,
        interval=0.3,
    )
    tree = load_tree(ROOT)
    wanted: dict[str, int] = {}
    for p in [
        p for d in tree.deployments for p in d.placements if (p.site, p.namespace) == (site, namespace)
    ]:
        deployment_dir = RENDERED / p.site / p.experiment / p.name
        objs = [
            o
            for f in sorted(deployment_dir.glob("*.yaml"))
            if f.name != "kustomization.yaml"
            for o in _docs(f)
        ]
        for kind in KINDS:  # ServiceAccounts first: pods naming a missing one are refused
            for obj in (o for o in objs if o["kind"] == kind):
                moved = _moved(obj, ns)
                if kind == "Deployment":
                    component = obj["metadata"]["labels"]["app.kubernetes.io/name"]
                    replicas = p.max_replicas if component == "triton" else int(obj["spec"]["replicas"])
                    moved["spec"]["replicas"] = replicas
                    wanted[obj["metadata"]["name"]] = replicas
                status, body = apply_object(cp, moved)
                assert status in (200, 201), (
                    f"{deployment_dir} {kind}/{obj['metadata']['name']}: {status} {body}"
                )
    return ns, wanted


def _pods(cp: ControlPlane, ns: str) -> list[dict[str, Any]]:
    status, body = cp.request("GET", f"/api/v1/namespaces/{ns}/pods")
    assert status == 200, body
    return list(body["items"])


def _refusals(cp: ControlPlane, ns: str) -> list[str]:
    _status, body = cp.request("GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DFailedCreate")
    return [e["message"] for e in (body or {}).get("items", [])]


@pytest.mark.parametrize(("site", "namespace"), cases(), ids=lambda v: str(v))
def test_every_rendered_pod_is_admitted_at_max_replicas(
    control_plane: ControlPlane, site: str, namespace: str
) -> None:
    ns, wanted = _setup(control_plane, site, namespace)
    assert wanted

    def missing() -> list[str]:
        pods = _pods(control_plane, ns)
        out = []
        for name, replicas in wanted.items():
            have = sum(1 for pod in pods if pod["metadata"]["name"].startswith(f"{name}-"))
            if have < replicas:
                out.append(f"{name}: {have}/{replicas} pods")
        if not any(pod["metadata"].get("labels", {}).get("job-name") for pod in pods):
            out.append("check Job: no pod")
        return out

    try:
        wait_until(f"every pod of {ns} created", lambda: not missing(), timeout=60, interval=0.5)
    except Exception:
        pytest.fail(f"{ns}: {missing()}; refused: {_refusals(control_plane, ns)}")
    assert not [m for m in _refusals(control_plane, ns) if "exceeded quota" in m]
    # The quota controller's own count stays within what it enforces.
    wait_until(
        f"usage of {ns} counted", lambda: bool(_quota_status(control_plane, ns).get("used")), timeout=30
    )


@pytest.mark.parametrize(("site", "namespace"), cases()[:1], ids=lambda v: str(v))
def test_a_pod_beyond_the_quota_is_refused(control_plane: ControlPlane, site: str, namespace: str) -> None:
    ns = _test_namespace(site, namespace)
    if not _pods(control_plane, ns):
        _setup(control_plane, site, namespace)
    hard = _quota_status(control_plane, ns)["hard"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "beyond-the-quota", "namespace": ns},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "resources": {
                        "requests": {"cpu": hard["requests.cpu"], "memory": "1Mi"},
                        "limits": {"cpu": hard["limits.cpu"], "memory": "1Mi"},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    status, body = control_plane.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod)
    assert status == 403, body
    assert "exceeded quota" in body.get("message", ""), body


@pytest.mark.parametrize(("site", "namespace"), cases()[:1], ids=lambda v: str(v))
def test_a_container_without_resources_gets_the_limit_range_defaults(
    control_plane: ControlPlane, site: str, namespace: str
) -> None:
    ns = _test_namespace(site, namespace)
    if not _pods(control_plane, ns):
        _setup(control_plane, site, namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "no-resources", "namespace": ns},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    status, body = control_plane.request("POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", pod)
    assert status == 201, body
    (container,) = body["spec"]["containers"]
    status, lr = control_plane.request("GET", f"/api/v1/namespaces/{ns}/limitranges/{names.LIMIT_RANGE_NAME}")
    assert status == 200, lr
    (limits,) = lr["spec"]["limits"]
    assert container["resources"] == {"limits": limits["default"], "requests": limits["defaultRequest"]}
