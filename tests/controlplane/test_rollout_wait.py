"""`sonic rollout wait` against real Application objects on the real API server.

The CLI runs with a real token of the ``sonic-rollout`` ServiceAccount (TokenRequest API), so RBAC
decides what it may read, exactly as in the workflow's ``wait`` step. The test plays Argo CD: it
creates the Applications (validated against Argo CD's CRD) and writes their status. The
Application CRD has no status subresource (argo-cd manifests/crds/application-crd.yaml:
``subresources: {}``): Argo CD writes status with the object, and so does this test.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.ops.conftest import Origin
from tests.ops.conftest import origin as origin  # a real git origin (fixture)
from tests.ops.test_argocd_wait import two_rollouts
from tests.support.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"


def sa_kubeconfig(cp: ControlPlane, path: Path, namespace: str, name: str) -> Path:
    """A kubeconfig holding a short-lived token of a ServiceAccount, minted by the API server."""
    status, body = cp.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    assert status == 201, body
    ca = base64.b64encode(cp.pki.ca_cert.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": cp.server, "certificate-authority-data": ca}}
                ],
                "users": [{"name": name, "user": {"token": body["status"]["token"]}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}],
                "current-context": "c",
            }
        )
    )
    return path


def application(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "cms",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "cms"},
            "source": {
                "repoURL": "https://github.com/fastmachinelearning/sonic-gitops.git",
                "path": f"gitops/rendered/{name}",
                "targetRevision": "gitops",
            },
        },
    }


def set_status(
    cp: ControlPlane,
    name: str,
    *,
    revision: str,
    sync: str = "Synced",
    health: str = "Healthy",
    phase: str = "Succeeded",
) -> None:
    """What Argo CD's application controller writes after a sync (fields the CRD requires)."""
    status = {
        "sync": {"status": sync, "revision": revision},
        "health": {"status": health},
        "reconciledAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "operationState": {
            "operation": {"sync": {"revision": revision}},
            "phase": phase,
            "message": f"sync {phase.lower()}",
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "syncResult": {"revision": revision},
        },
    }
    code, body = cp.request(
        "PATCH", f"{APPS}/{name}", {"status": status}, content_type="application/merge-patch+json"
    )
    assert code == 200, body


def create(cp: ControlPlane, name: str) -> None:
    cp.request("DELETE", f"{APPS}/{name}")
    code, body = cp.request("POST", APPS, application(name))
    assert code == 201, body


def wait_cli(
    kubeconfig: Path, app: str, revision: str, *extra: str, timeout: str = "60s"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("sonic")),
            "rollout",
            "wait",
            "--application",
            app,
            "--namespace",
            "argocd",
            "--revision",
            revision,
            "--interval",
            "0.2",
            "--timeout",
            timeout,
            "--kubeconfig",
            str(kubeconfig),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def test_two_rollouts_from_one_branch_both_succeed(
    rbac: ControlPlane,
    origin: Origin,
    tmp_path: Path,
) -> None:
    """Two sites follow one branch: our commit A, then a neighbour's B on top. Argo CD reports B
    for our Application; the wait must count it (B contains A), not time out and revert."""
    a, b, unrelated, workdir = two_rollouts(origin, tmp_path)
    kubeconfig = sa_kubeconfig(rbac, tmp_path / "kubeconfig", "sonic-pipelines", "sonic-rollout")
    create(rbac, "uchicago-cms-minimal")
    create(rbac, "geddes-cms-minimal")
    set_status(rbac, "uchicago-cms-minimal", revision=unrelated, sync="OutOfSync", health="Progressing")
    ours = wait_cli(kubeconfig, "uchicago-cms-minimal", a, "--checkout", str(workdir), "--branch", "gitops")
    theirs = wait_cli(kubeconfig, "geddes-cms-minimal", b)
    # Argo CD syncs both to the branch head, B, a moment later.
    threading.Timer(1.0, set_status, (rbac, "uchicago-cms-minimal"), {"revision": b}).start()
    threading.Timer(1.0, set_status, (rbac, "geddes-cms-minimal"), {"revision": b}).start()
    out_ours, _ = ours.communicate(timeout=90)
    out_theirs, _ = theirs.communicate(timeout=90)
    assert ours.returncode == 0, out_ours
    assert f"which contains {a[:12]}" in out_ours
    assert theirs.returncode == 0, out_theirs


def test_degraded_at_our_revision_fails(rbac: ControlPlane, tmp_path: Path) -> None:
    kubeconfig = sa_kubeconfig(rbac, tmp_path / "kubeconfig", "sonic-pipelines", "sonic-rollout")
    create(rbac, "nautilus-cms-particlenet")
    rev = "f" * 40
    set_status(rbac, "nautilus-cms-particlenet", revision=rev, health="Degraded")
    proc = wait_cli(kubeconfig, "nautilus-cms-particlenet", rev, timeout="20s")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "Degraded" in out


def test_an_account_without_the_role_is_refused_by_name(rbac: ControlPlane, tmp_path: Path) -> None:
    """The pr-validation account may not read Applications: the CLI says so at once (exit 2)."""
    kubeconfig = sa_kubeconfig(rbac, tmp_path / "kubeconfig", "sonic-pipelines", "sonic-pr-validation")
    create(rbac, "anvil-cms-particlenet-anvil")
    proc = wait_cli(kubeconfig, "anvil-cms-particlenet-anvil", "f" * 40, timeout="20s")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "refused (HTTP 403)" in out and "needs get on applications.argoproj.io" in out, out
