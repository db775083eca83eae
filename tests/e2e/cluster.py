"""What the kind end-to-end test installs and asks of the cluster, through kubectl.

Pinned upstream releases (the CRDs in ../shared/crds come from the same ones), and the few
objects the test adds itself: a Prometheus for the ``kind-extra`` site (its config includes the
rendered scrape configs and rules, as a site admin's would), MinIO as the workflows' artifact
repository, the EventBus Argo Events needs, the snapshot volumes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

KIND_NODE_IMAGE = "kindest/node:v1.31.6"
MANIFESTS = {
    "argocd": "https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml",
    "argo": "https://github.com/argoproj/argo-workflows/releases/download/v4.1.2/install.yaml",
    "argo-events": "https://github.com/argoproj/argo-events/releases/download/v1.9.11/install.yaml",
    "keda": "https://github.com/kedacore/keda/releases/download/v2.20.2/keda-2.20.2.yaml",
    "prometheus-operator-crds": "https://github.com/prometheus-operator/prometheus-operator/releases/download/v0.93.0/stripped-down-crds.yaml",
}
NAMESPACED = {"argocd": "argocd", "argo": "argo", "argo-events": "argo-events"}
PROMETHEUS_IMAGE = "quay.io/prometheus/prometheus:v2.53.0"  # scrape_config_files needs >= 2.43
MINIO_IMAGE = "minio/minio:RELEASE.2024-01-18T22-51-28Z"
MINIO_USER, MINIO_PASSWORD = "sonic-e2e", "sonic-e2e-not-a-secret"  # a throw-away cluster's


def run(*cmd: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None,
        stdin: str | None = None) -> str:  # fmt: skip
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, env=env, input=stdin
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[:5])}... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


class Kubectl:
    """kubectl against one kubeconfig."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, timeout: float = 600, stdin: str | None = None, check: bool = True) -> str:
        return run(
            "kubectl", "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout, stdin=stdin, check=check
        )

    def apply(self, *objects: dict[str, Any], server_side: bool = False) -> None:
        text = yaml.safe_dump_all(list(objects), sort_keys=False)
        self("apply", *(["--server-side", "--force-conflicts"] if server_side else []), "-f", "-", stdin=text)

    def apply_file(self, path: Path) -> None:
        self("apply", "-f", str(path))

    def create(self, obj: dict[str, Any]) -> str:
        """Create ``obj`` (generateName allowed); returns its name."""
        return self("create", "-f", "-", "-o", "jsonpath={.metadata.name}", stdin=json.dumps(obj)).strip()

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self("-n", namespace, "get", kind, name, "-o", "json"))
        return obj

    def rollout_status(self, namespace: str, what: str, timeout: int = 600) -> None:
        self("-n", namespace, "rollout", "status", what, f"--timeout={timeout}s", timeout=timeout + 60)

    def wait_for(self, description: str, probe: Any, timeout: float, interval: float = 5.0) -> Any:
        """Call ``probe()`` until it returns something truthy; fail with ``description`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {description} (last: {last!r})")

    @contextmanager
    def port_forward(self, namespace: str, target: str, remote_port: int) -> Iterator[int]:
        """``kubectl port-forward`` to a local free port for the ``with`` block; stopped after it."""
        port = free_port()
        proc = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", namespace, "port-forward", target,
             f"{port}:{remote_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.5)
            yield port
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kind_gateway() -> str:
    """The kind network's IPv4 gateway: the host as the cluster's nodes (and pods) reach it."""
    info = json.loads(run("docker", "network", "inspect", "kind"))
    for config in info[0]["IPAM"]["Config"]:
        if "." in config.get("Gateway", ""):
            return str(config["Gateway"])
    raise AssertionError(f"the kind network has no IPv4 gateway: {info[0]['IPAM']['Config']}")


# --- what the test installs ---------------------------------------------------------------------


def install_upstream(kubectl: Kubectl) -> None:
    """Argo CD, Argo Workflows, Argo Events, KEDA and the Prometheus Operator CRDs, all pinned."""
    for component, url in MANIFESTS.items():
        namespace = NAMESPACED.get(component)
        if namespace:
            kubectl("create", "namespace", namespace)
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            *(["-n", namespace] if namespace else []),
            "-f",
            url,
        )
    for namespace, what in (
        ("argocd", "deploy/argocd-repo-server"),
        ("argocd", "statefulset/argocd-application-controller"),
        ("argocd", "deploy/argocd-applicationset-controller"),
        ("argo", "deploy/workflow-controller"),
        ("argo-events", "deploy/controller-manager"),
        ("keda", "deploy/keda-operator"),
        ("keda", "deploy/keda-operator-metrics-apiserver"),
    ):
        kubectl.rollout_status(namespace, what)


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": data}  # fmt: skip


def snapshot_volumes(namespaces: list[str]) -> list[dict[str, Any]]:
    """Per namespace, the snapshots claim on the node's /snapshots (the test's snapshot directory).

    Writable, so that the build-model-repository workflow can publish there; Triton mounts it
    read-only as rendered.
    """
    out: list[dict[str, Any]] = []
    for ns in namespaces:
        pv = f"sonic-model-snapshots-{ns}"
        out += [
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
             "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                      "hostPath": {"path": "/snapshots", "type": "Directory"},
                      "claimRef": {"namespace": ns, "name": "sonic-model-snapshots"}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "sonic-model-snapshots", "namespace": ns},
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                      "resources": {"requests": {"storage": "1Gi"}}}},
        ]  # fmt: skip
    return out


def event_bus(namespace: str) -> dict[str, Any]:
    """The EventBus ``default`` the EventSource and Sensor talk through (NATS JetStream)."""
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {"jetstream": {"version": "latest"}}}  # fmt: skip


def prometheus(monitoring_configmaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Prometheus in ``monitoring`` that includes each rendered ``<name>-monitoring`` ConfigMap's
    scrape configs and rules, as docs/gitops.md asks of a site without the Prometheus Operator."""
    files: dict[str, str] = {}
    for cm in monitoring_configmaps:
        name = cm["metadata"]["name"]
        files[f"{name}-scrape-configs.yaml"] = cm["data"]["scrape-configs.yaml"]
        files[f"{name}-rules.yaml"] = cm["data"]["rules.yaml"]
    config = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "scrape_config_files": ["/etc/prometheus/sonic/*-scrape-configs.yaml"],
        "rule_files": ["/etc/prometheus/sonic/*-rules.yaml"],
    }
    labels = {"app.kubernetes.io/name": "prometheus"}
    return [
        namespace("monitoring", {"sonic.fastml.org/prometheus": "true"}),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", "namespace": "monitoring"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "e2e-prometheus"},
         "rules": [{"apiGroups": [""], "resources": ["services", "endpoints", "pods"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "e2e-prometheus"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-prometheus"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus", "namespace": "monitoring"},
         "data": {"prometheus.yml": yaml.safe_dump(config)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sonic-rendered", "namespace": "monitoring"},
         "data": files},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prometheus", "namespace": "monitoring"},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "prometheus",
                      "containers": [{"name": "prometheus", "image": PROMETHEUS_IMAGE,
                                      "args": ["--config.file=/etc/prometheus/prometheus.yml",
                                               "--storage.tsdb.path=/prometheus"],
                                      "ports": [{"name": "web", "containerPort": 9090}],
                                      "readinessProbe": {"httpGet": {"path": "/-/ready", "port": 9090}},
                                      "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                                                       {"name": "sonic", "mountPath": "/etc/prometheus/sonic"},
                                                       {"name": "data", "mountPath": "/prometheus"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "prometheus"}},
                                  {"name": "sonic", "configMap": {"name": "sonic-rendered"}},
                                  {"name": "data", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "prometheus", "namespace": "monitoring"},
         "spec": {"selector": labels, "ports": [{"name": "web", "port": 9090, "targetPort": 9090}]}},
    ]  # fmt: skip


def minio_artifact_repository(workflow_namespaces: list[str]) -> list[dict[str, Any]]:
    """MinIO in ``minio`` and, in each namespace that runs workflows with artifacts, the default
    artifact repository (argo-workflows docs/configure-artifact-repository.md: the
    ``artifact-repositories`` ConfigMap annotated as the namespace's default)."""
    labels = {"app.kubernetes.io/name": "minio"}
    out: list[dict[str, Any]] = [
        namespace("minio"),
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "minio", "namespace": "minio"},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                      "name": "minio", "image": MINIO_IMAGE, "args": ["server", "/data"],
                      "env": [{"name": "MINIO_ROOT_USER", "value": MINIO_USER},
                              {"name": "MINIO_ROOT_PASSWORD", "value": MINIO_PASSWORD}],
                      "ports": [{"containerPort": 9000}],
                      "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": 9000}},
                      "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                      "volumes": [{"name": "data", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "minio", "namespace": "minio"},
         "spec": {"selector": labels, "ports": [{"port": 9000, "targetPort": 9000}]}},
    ]  # fmt: skip
    repository = {
        "s3": {
            "endpoint": "minio.minio.svc:9000",
            "bucket": "sonic-e2e",
            "insecure": True,
            "createBucketIfNotPresent": {},
            "accessKeySecret": {"name": "e2e-minio", "key": "accesskey"},
            "secretKeySecret": {"name": "e2e-minio", "key": "secretkey"},
        }
    }
    for ns in workflow_namespaces:
        out += [
            secret("e2e-minio", ns, {"accesskey": MINIO_USER, "secretkey": MINIO_PASSWORD}),
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "artifact-repositories", "namespace": ns,
                          "annotations": {"workflows.argoproj.io/default-artifact-repository": "default"}},
             "data": {"default": yaml.safe_dump(repository)}},
        ]  # fmt: skip
    return out


# --- Argo Workflows -----------------------------------------------------------------------------


def workflow_from_template(template: str, namespace: str, parameters: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": f"{template}-e2e-", "namespace": namespace},
        "spec": {
            "workflowTemplateRef": {"name": template},
            "arguments": {"parameters": [{"name": k, "value": v} for k, v in parameters.items()]},
        },
    }


def workflow_from_cron(kubectl: Kubectl, name: str, namespace: str) -> dict[str, Any]:
    """What ``argo submit --from cronwf/NAME`` submits: the CronWorkflow's workflowSpec, now."""
    cron = kubectl.get("cronworkflow", name, namespace)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{name}-e2e-",
            "namespace": namespace,
            "labels": cron["metadata"].get("labels", {}),
        },
        "spec": cron["spec"]["workflowSpec"],
    }


def wait_for_workflow(kubectl: Kubectl, name: str, namespace: str, timeout: float = 1800) -> dict[str, Any]:
    """The finished Workflow; fails with each failed node's message unless it Succeeded."""

    def finished() -> dict[str, Any] | None:
        wf = kubectl.get("workflow", name, namespace)
        return wf if wf.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error") else None

    wf: dict[str, Any] = kubectl.wait_for(f"workflow {namespace}/{name}", finished, timeout, interval=10)
    if wf["status"]["phase"] != "Succeeded":
        failed = [f"{n.get('displayName')}: {n.get('phase')}: {n.get('message', '')}"
                  for n in wf["status"].get("nodes", {}).values() if n.get("phase") in ("Failed", "Error")]  # fmt: skip
        raise AssertionError(
            f"workflow {name} {wf['status']['phase']}: {wf['status'].get('message', '')}\n"
            + "\n".join(failed)
        )
    return wf
