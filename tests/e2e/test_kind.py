"""End to end on a real Kubernetes cluster (kind): GitOps through Argo CD, then `sonic check`.

NOT RUN WHERE THIS WAS WRITTEN: that machine has no Docker engine and no image pulls, so this
test skips there (and in CI). It is written to run on a workstation with Docker, kind and
kubectl and network access (`make e2e`, or `pytest -m kind tests/e2e`); expect 20-60 minutes, most
of it pulling the Triton image.

What it does:
 1. prepares a copy of the repository for a site ``kind`` (the cluster itself): the ``minimal``
    deployment placed there only, its admission gate off (the cluster has no Prometheus);
    ``sonic build-models`` builds its snapshot into a directory the kind node mounts; ``sonic
    render`` and ``sonic pipelines render`` render the copy;
 2. builds the pipeline image from the Dockerfile (the PostSync check Job runs it) and a kind
    cluster, and loads the image into it;
 3. installs pinned upstream Argo CD, Argo Workflows, Argo Events, KEDA and the Prometheus
    Operator CRDs;
 4. serves the copy as a git repository over HTTP on the kind network, publishes the rendered
    directory to its ``gitops`` branch with ``sonic rollout commit``, applies ``gitops/argocd/kind``
    (repository URL pointed at that server) and ``gitops/workflows``;
 5. ``sonic rollout wait`` until the Application is Synced and Healthy at that commit (this
    includes the PostSync ``sonic check`` hook), then ``sonic check`` through a port-forward;
 6. deletes the cluster and stops every process it started, whatever happened.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# Pinned upstream versions (the CRDs in ../shared/crds come from the same releases).
KIND_NODE_IMAGE = "kindest/node:v1.31.6"
MANIFESTS = {
    "argocd": "https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml",
    "argo": "https://github.com/argoproj/argo-workflows/releases/download/v4.1.2/install.yaml",
    "argo-events": "https://github.com/argoproj/argo-events/releases/download/v1.9.11/install.yaml",
    "keda": "https://github.com/kedacore/keda/releases/download/v2.20.2/keda-2.20.2.yaml",
    "prometheus-operator-crds": "https://github.com/prometheus-operator/prometheus-operator/releases/download/v0.93.0/stripped-down-crds.yaml",
}
NAMESPACE = "cms-af"
APPLICATION = "kind-cms-minimal"

KIND_SITE = """\
# A throw-away kind cluster (tests/e2e/test_kind.py).
name: kind
description: A throw-away kind cluster for the end-to-end test
argocd: {server: https://kubernetes.default.svc}
kubernetes: {minVersion: "1.31", maxVersion: "1.31"}
storage:
  snapshots: {claim: sonic-model-snapshots}
experiments:
  cms: {namespaces: [cms-af], gpuQuota: 0}
"""


def sonic(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as the pipeline steps do)."""
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def prepare_repository(dest: Path, snapshots: Path | None = None) -> Path:
    """A copy of the repository configured for the ``kind`` site, built and rendered.

    The snapshot is built into ``snapshots`` (default ``dest/snapshots``), the directory the kind
    node mounts as the snapshots claim.
    """
    (dest / "gitops").mkdir(parents=True)
    shutil.copytree(ROOT / "experiments", dest / "experiments")
    shutil.copytree(ROOT / "gitops" / "sites", dest / "gitops" / "sites")
    shutil.copy(ROOT / "gitops" / "repository.yaml", dest / "gitops" / "repository.yaml")
    (dest / "gitops" / "sites" / "kind.yaml").write_text(KIND_SITE)
    exp = dest / "experiments" / "cms" / "experiment.yaml"
    exp.write_text(exp.read_text().replace("sites:\n", "sites:\n  kind: {namespaces: [cms-af]}\n", 1))
    minimal = dest / "experiments" / "cms" / "minimal.yaml"
    text = minimal.read_text()
    # Only at kind; no admission gate, because no Prometheus runs in the cluster to ask.
    text = re.sub(
        r"sites:\n(?:  \S.*\n(?:    .*\n)*)+", f"sites:\n  kind:\n    namespace: {NAMESPACE}\n", text, count=1
    )
    text = re.sub(r"admissionGate: \{[^}]*\}", "admissionGate: {enabled: false}", text)
    minimal.write_text(text)
    snapshots = snapshots or dest / "snapshots"
    for args in (
        ("validate",),
        ("build-models", "cms/minimal", "--dest", str(snapshots / "cms" / "minimal")),
        ("render",),
        ("pipelines", "render"),
    ):
        result = sonic(*args, cwd=dest)
        assert result.returncode == 0, f"sonic {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return dest


def test_the_e2e_repository_prepares_without_a_cluster(tmp_path: Path) -> None:
    """The cluster test's input is valid, builds and renders (this part runs everywhere)."""
    repo = prepare_repository(tmp_path / "repo")
    rendered = repo / "gitops" / "rendered" / "kind" / "cms" / "minimal"
    assert (rendered / "deployment.yaml").is_file() and (rendered / "job.yaml").is_file()
    assert (
        "server: https://kubernetes.default.svc"
        in (repo / "gitops" / "argocd" / "kind" / "applicationset.yaml").read_text()
    )
    assert list((repo / "snapshots" / "cms" / "minimal" / "snapshots").iterdir())
    assert (repo / "gitops" / "workflows" / "scheduled-validation-kind.yaml").is_file()


# --- the cluster test -----------------------------------------------------------------------------


def run(*cmd: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


@functools.cache
def unavailable() -> str | None:
    """Why a kind cluster cannot be made here, or None."""
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return f"no Docker engine: {info.stderr.strip().splitlines()[-1] if info.stderr.strip() else 'docker info failed'}"
    pull = subprocess.run(
        ["docker", "pull", KIND_NODE_IMAGE], capture_output=True, text=True, timeout=900, check=False
    )
    if pull.returncode != 0:
        return f"cannot pull {KIND_NODE_IMAGE}: {pull.stderr.strip()[-300:]}"
    return None


@pytest.fixture
def kind_cluster(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """(cluster name, kubeconfig, snapshots dir mounted on the node); always deleted."""
    why = unavailable()
    if why:
        pytest.skip(f"kind end-to-end test needs Docker with image pulls, kind and kubectl: {why}")
    name = f"sonic-e2e-{uuid.uuid4().hex[:6]}"
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir(parents=True)
    config = tmp_path / "kind.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n"
        f"  extraMounts:\n  - hostPath: {snapshots}\n    containerPath: /snapshots\n    readOnly: true\n"
    )
    kubeconfig = tmp_path / "kubeconfig"
    try:
        run("kind", "create", "cluster", "--name", name, "--image", KIND_NODE_IMAGE, "--config", str(config),
            "--kubeconfig", str(kubeconfig), "--wait", "180s", timeout=600)  # fmt: skip
        yield name, kubeconfig, snapshots
    finally:
        subprocess.run(
            ["kind", "delete", "cluster", "--name", name], capture_output=True, timeout=300, check=False
        )


class GitHttpServer:
    """A git repository served over HTTP ("dumb" protocol) to the kind node; stopped at teardown."""

    def __init__(self, directory: Path, host: str):
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def kubectl(kubeconfig: Path, *args: str, timeout: float = 600) -> str:
    return run("kubectl", "--kubeconfig", str(kubeconfig), *args, timeout=timeout)


def snapshot_volume() -> list[dict[str, Any]]:
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "sonic-model-snapshots-cms-af"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "hostPath": {"path": "/snapshots", "type": "Directory"},
            "claimRef": {"namespace": NAMESPACE, "name": "sonic-model-snapshots"},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "sonic-model-snapshots", "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": "sonic-model-snapshots-cms-af",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    return [pv, pvc]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.kind
def test_minimal_deploys_through_argocd_and_passes_its_checks(
    kind_cluster: tuple[str, Path, Path], tmp_path: Path
) -> None:
    name, kubeconfig, snapshots = kind_cluster
    repo = prepare_repository(tmp_path / "repo", snapshots)  # the snapshot lands on the node mount

    # The pipeline image, which the PostSync check Job runs.
    from pipelines.workflows.settings import load_settings

    image = load_settings(repo).image
    run("docker", "build", "-t", image, str(ROOT), timeout=1800)
    run("kind", "load", "docker-image", image, "--name", name, timeout=600)

    for component, url in MANIFESTS.items():
        namespace = {"argocd": "argocd", "argo": "argo", "argo-events": "argo-events"}.get(component)
        if namespace:
            kubectl(kubeconfig, "create", "namespace", namespace)
        kubectl(
            kubeconfig,
            "apply",
            "--server-side",
            "--force-conflicts",
            *(["-n", namespace] if namespace else []),
            "-f",
            url,
        )
    kubectl(
        kubeconfig,
        "-n",
        "argocd",
        "rollout",
        "status",
        "deploy/argocd-repo-server",
        "--timeout=600s",
        timeout=660,
    )
    kubectl(
        kubeconfig,
        "-n",
        "argocd",
        "rollout",
        "status",
        "statefulset/argocd-application-controller",
        "--timeout=600s",
        timeout=660,
    )
    kubectl(
        kubeconfig,
        "-n",
        "argocd",
        "rollout",
        "status",
        "deploy/argocd-applicationset-controller",
        "--timeout=600s",
        timeout=660,
    )

    kubectl(kubeconfig, "create", "namespace", NAMESPACE)
    volume = tmp_path / "snapshot-volume.json"
    volume.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": snapshot_volume()}))
    kubectl(kubeconfig, "apply", "-f", str(volume))

    # The GitOps branch, served where the kind node can reach it.
    gateway = run("docker", "network", "inspect", "kind", "-f", "{{(index .IPAM.Config 0).Gateway}}").strip()
    served = tmp_path / "served"
    bare = served / "sonic-gitops.git"
    run("git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    commit = sonic(
        "rollout", "commit", "--source", str(repo), "--path", "gitops/rendered/kind/cms/minimal",
        "--site", "kind", "--deployment", "cms/minimal", "--source-revision", "0" * 40,
        "--remote", f"file://{bare}", "--branch", "gitops", "--workdir", str(tmp_path / "gitops-wc"),
        "--outputs", str(tmp_path / "commit-out"), cwd=repo,
    )  # fmt: skip
    assert commit.returncode == 0, commit.stdout + commit.stderr
    revision = (tmp_path / "commit-out" / "commit").read_text()
    run("git", "-C", str(bare), "update-server-info")  # what the dumb HTTP protocol reads
    server = GitHttpServer(served, gateway)
    try:
        upstream = load_settings(repo)
        local_url = server.url("sonic-gitops.git")
        for manifest in sorted((repo / "gitops" / "argocd" / "kind").glob("*.yaml")):
            if manifest.name == "kustomization.yaml":
                continue
            patched = tmp_path / f"argocd-{manifest.name}"
            text = manifest.read_text().replace(f"{upstream.git_server}/{upstream.repository}.git", local_url)
            patched.write_text(text)
            kubectl(kubeconfig, "apply", "-f", str(patched))
        # This cluster's share of gitops/workflows (other sites' files name namespaces it lacks).
        for file in (
            "common",
            "events",
            "pr-validation",
            "rollout",
            "build-model-repository-kind",
            "scheduled-validation-kind",
        ):
            kubectl(kubeconfig, "apply", "-f", str(repo / "gitops" / "workflows" / f"{file}.yaml"))

        wait = sonic(
            "rollout", "wait", "--application", APPLICATION, "--namespace", "argocd", "--revision", revision,
            "--timeout", "45m", "--interval", "15s", "--kubeconfig", str(kubeconfig), cwd=repo, timeout=2800,
        )  # fmt: skip
        assert wait.returncode == 0, wait.stdout + wait.stderr

        port = free_port()
        forward = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, "port-forward", "svc/minimal-envoy", f"{port}:8001"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.5)
            check = sonic(
                "check",
                "--endpoint",
                f"127.0.0.1:{port}",
                "--site",
                "kind",
                "--format",
                "json",
                "cms/minimal",
                cwd=repo,
            )
            report = json.loads(check.stdout) if check.stdout.strip() else {}
            assert check.returncode == 0 and report.get("passed"), check.stdout + check.stderr
        finally:
            os.killpg(forward.pid, signal.SIGTERM)
            forward.wait(timeout=30)
    finally:
        server.stop()
