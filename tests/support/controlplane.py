"""A real Kubernetes control plane on 127.0.0.1 for the `controlplane` test tier.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from their published Go
modules by ``scripts/controlplane-tools.sh``, run as a production cluster runs them: TLS with a
cluster CA, RBAC (and Node) authorization, and the admission plugins kubeadm enables plus
ResourceQuota and PodSecurity. There is no kubelet: kwok plays the nodes and moves pods through
their lifecycle (scheduled -> Running, Job and workflow pods -> Succeeded), so controllers see what
they would see on a cluster. The KEDA operator and the Argo Workflows controller run beside it
when they were built.

What this cannot show: containers actually starting (images, volumes, probes), GPUs, networking
between pods (NetworkPolicies are stored, not enforced), and a real ingress controller.

Every process runs in its own process group, listens only on 127.0.0.1 and is stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.local.processes import Proc, StartError, free_ports, start, stop, wait_until
from pipelines.workflows import controller as controller_config
from tests.support.pki import ClusterPki, make_cluster_pki

ROOT = Path(__file__).resolve().parents[2]
SHARED_CRDS = ROOT.parent / "shared" / "crds"
TOOLS_SCRIPT = ROOT / "scripts" / "controlplane-tools.sh"
GO_MODULES = Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")

REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Annotation kwok uses to pick the nodes it plays (kwok --manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_RANGE = "10.96.0.0/16"
# The admission plugins a kubeadm cluster enables by default, plus the ones the issue names.
ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "NodeRestriction",
)
KEDA_NAMESPACE = "keda"
ARGO_NAMESPACE = "argo"
START_TIMEOUT = 90.0


class ControlPlaneUnavailable(RuntimeError):
    """A required binary is missing: the message says how to build it."""


def tool_bindir() -> Path:
    """The directory of built binaries for the versions pinned in tools/controlplane/.

    ``SONIC_CONTROLPLANE_BIN`` overrides it (binaries built some other way, at your own risk).
    """
    if os.environ.get("SONIC_CONTROLPLANE_BIN"):
        return Path(os.environ["SONIC_CONTROLPLANE_BIN"])
    out = subprocess.run(
        ["bash", str(TOOLS_SCRIPT), "--bindir"], check=True, capture_output=True, text=True, timeout=60
    )
    return Path(out.stdout.strip())


def missing_tools(bindir: Path, names: Sequence[str] = REQUIRED) -> list[str]:
    return [n for n in names if not (bindir / n).exists()]


def module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds a module's files (upper case escaped as Go does)."""
    escaped = "".join(f"!{c.lower()}" if c.isupper() else c for c in module)
    return GO_MODULES / f"{escaped}@{version}"


def pinned_version(component: str, module: str) -> str:
    for line in (ROOT / "tools" / "controlplane" / component / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and module in words and words[-1].startswith("v"):
            return words[-1]
    raise LookupError(f"{module} is not required in tools/controlplane/{component}/go.mod")


@dataclass
class ControlPlane:
    """A running control plane: its address, credentials and processes."""

    workdir: Path
    bindir: Path
    pki: ClusterPki
    server: str
    kubeconfig: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    controllers: tuple[str, ...] = ()  # optional controllers that started (keda, argo-workflows)
    provisioner: threading.Event | None = None  # set to stop the volume provisioner thread

    # --- clients ---------------------------------------------------------------------------------

    def api_client(self) -> Any:
        """An official `kubernetes` client as the admin."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
        as_user: str | None = None,
        groups: Sequence[str] = (),
    ) -> tuple[int, Any]:
        """A raw HTTPS request as the admin, or impersonating ``as_user`` (and ``groups``):
        (status, decoded JSON body). Impersonation makes the API server authorize the request as
        that identity, exactly as for its own token."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        url = urllib.parse.urlsplit(self.server)
        conn = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, context=ctx, timeout=timeout
        )
        try:
            conn.putrequest(method, path)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Accept", "application/json")
            conn.putheader("Content-Length", str(len(data or b"")))
            if as_user:
                conn.putheader("Impersonate-User", as_user)
                for g in groups:  # one header per group: the API server reads every value
                    conn.putheader("Impersonate-Group", g)
            conn.endheaders(data)
            resp = conn.getresponse()
            return resp.status, _decode(resp.read())
        finally:
            conn.close()

    def as_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """Keyword arguments for :meth:`request` that act as a ServiceAccount (with its groups)."""
        return {
            "as_user": f"system:serviceaccount:{namespace}:{name}",
            "groups": (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        }

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this cluster (and only this one)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def logs(self) -> str:
        return "\n".join(f"--- {name} ({p.log})\n{p.log_tail(20)}" for name, p in self.procs.items())


def _decode(raw: bytes) -> Any:
    """JSON answers decoded; plain ones (``/readyz`` says ``ok``) as text."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


# --- start ---------------------------------------------------------------------------------------


def _kubeconfig(path: Path, server: str, pki: ClusterPki, namespace: str = "default") -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "sonic",
                        "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
                    }
                ],
                "users": [
                    {
                        "name": "admin",
                        "user": {
                            "client-certificate-data": b64(pki.admin_cert),
                            "client-key-data": b64(pki.admin_key),
                        },
                    }
                ],
                "contexts": [
                    {
                        "name": "sonic",
                        "context": {"cluster": "sonic", "user": "admin", "namespace": namespace},
                    }
                ],
                "current-context": "sonic",
            },
            sort_keys=False,
        )
    )
    path.chmod(0o600)


def _healthy(cp: ControlPlane, path: str) -> bool:
    status, _ = cp.request("GET", path, timeout=5)
    return status == 200


def start_control_plane(
    workdir: Path, bindir: Path, *, controllers: Sequence[str] = ("keda", "argo-workflows")
) -> ControlPlane:
    """Start everything; on any failure stop what started and raise StartError with the logs."""
    missing = missing_tools(bindir)
    if missing:
        raise ControlPlaneUnavailable(
            f"control-plane binaries missing in {bindir}: {', '.join(missing)}; run scripts/controlplane-tools.sh"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    pki = make_cluster_pki(workdir / "pki")
    etcd_client, etcd_peer, api_port = free_ports(3)
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig = workdir / "admin.kubeconfig"
    _kubeconfig(kubeconfig, server, pki)
    cp = ControlPlane(workdir=workdir, bindir=bindir, pki=pki, server=server, kubeconfig=kubeconfig)
    logs = workdir / "logs"
    try:
        cp.procs["etcd"] = start(
            "etcd",
            [
                str(bindir / "etcd"),
                "--name=sonic",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=sonic=http://127.0.0.1:{etcd_peer}",
                "--listen-metrics-urls=",
                # A throw-away cluster: no fsync, and room for Argo's full CRDs (> 1.5 MiB each).
                "--unsafe-no-fsync",
                "--max-request-bytes=16777216",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        cp.procs["kube-apiserver"] = start(
            "kube-apiserver",
            [
                str(bindir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--allow-privileged=true",
                # No kube-proxy or kubelet: the `kubernetes` Service keeps no loopback endpoint.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--max-mutating-requests-inflight=400",
                "--max-requests-inflight=800",
                "--v=0",
            ],
            logs / "kube-apiserver.log",
        )
        wait_until(
            "kube-apiserver /readyz",
            lambda: _healthy(cp, "/readyz"),
            timeout=START_TIMEOUT,
            procs=[cp.procs["etcd"], cp.procs["kube-apiserver"]],
            interval=0.25,
        )
        cp.procs["kube-controller-manager"] = start(
            "kube-controller-manager",
            [
                str(bindir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                # The token controller fills `kubernetes.io/service-account-token` Secrets with
                # tokens signed by this key and the CA bundle pods are given.
                f"--service-account-private-key-file={pki.sa_private}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--controllers=*",
                "--concurrent-gc-syncs=5",
                "--v=0",
            ],
            logs / "kube-controller-manager.log",
        )
        cp.procs["kube-scheduler"] = start(
            "kube-scheduler",
            [
                str(bindir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_ports(1)[0]}",
                f"--cert-dir={workdir / 'scheduler-certs'}",
                "--v=0",
            ],
            logs / "kube-scheduler.log",
        )
        stages = workdir / "kwok-stages.yaml"
        shutil.copyfile(Path(__file__).with_name("kwok-stages.yaml"), stages)
        cp.procs["kwok"] = start(
            "kwok",
            [
                str(bindir / "kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION[0]}={KWOK_NODE_ANNOTATION[1]}",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.240.0.1",
                "--node-lease-duration-seconds=40",
            ],
            logs / "kwok.log",
        )
        wait_until(
            "the default ServiceAccount (controller-manager running)",
            lambda: (
                cp.request("GET", "/api/v1/namespaces/default/serviceaccounts/default", timeout=5)[0] == 200
            ),
            timeout=START_TIMEOUT,
            procs=list(cp.procs.values()),
            interval=0.25,
        )
        install_crds(cp)
        _start_provisioner(cp)
        started = []
        if "keda" in controllers and not missing_tools(bindir, ("keda-operator",)):
            _start_keda(cp, logs)
            started.append("keda")
        if "argo-workflows" in controllers and not missing_tools(bindir, ("workflow-controller",)):
            _start_argo_workflows(cp, logs)
            started.append("argo-workflows")
        cp.controllers = tuple(started)
        return cp
    except BaseException:
        stop_control_plane(cp, keep_workdir=True)
        raise


def stop_control_plane(cp: ControlPlane, *, keep_workdir: bool = False) -> None:
    """Stop every process by PID (controllers first, etcd last); remove the work directory."""
    if cp.provisioner is not None:
        cp.provisioner.set()
    for name in reversed(list(cp.procs)):
        stop(cp.procs[name], grace=5.0)
    for sock in _HELD_SOCKETS.pop(id(cp), []):
        sock.close()
    if not keep_workdir:
        shutil.rmtree(cp.workdir, ignore_errors=True)


# --- CRDs ----------------------------------------------------------------------------------------


def crd_documents() -> list[dict[str, Any]]:
    """The upstream CRDs: ../shared/crds, plus the ones the built controllers watch that it lacks.

    The latter come from the controllers' own published modules in the Go module cache (the same
    versions that were built), so the apiserver and the controllers agree on every schema.
    """
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(SHARED_CRDS.glob("*/*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            docs[doc["metadata"]["name"]] = doc
    extra = [
        (
            module_dir(
                "github.com/argoproj/argo-workflows/v4",
                pinned_version("argo-workflows", "github.com/argoproj/argo-workflows/v4"),
            )
            / "manifests"
            / "base"
            / "crds"
            / "minimal"
        ),
        (
            module_dir("github.com/kedacore/keda/v2", pinned_version("keda", "github.com/kedacore/keda/v2"))
            / "config"
            / "crd"
            / "bases"
        ),
    ]
    for folder in extra:
        for path in sorted(folder.glob("*.yaml")):
            doc = yaml.safe_load(path.read_text())
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.setdefault(doc["metadata"]["name"], doc)
    return [docs[k] for k in sorted(docs)]


def install_crds(cp: ControlPlane) -> None:
    """Create every CRD (in parallel: the API server builds each schema on its own) and wait
    until discovery serves them all."""
    docs = crd_documents()

    def create(doc: dict[str, Any]) -> str | None:
        doc.get("metadata", {}).pop("creationTimestamp", None)
        status, body = cp.request(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc, timeout=120
        )
        if status in (201, 409):
            return None
        return f"installing CRD {doc['metadata']['name']}: HTTP {status}: {str(body)[:500]}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(create, docs) if f]
    if failures:
        raise StartError("\n".join(failures))
    wanted = {
        (f"{d['spec']['group']}/{v['name']}", d["spec"]["names"]["plural"])
        for d in docs
        for v in d["spec"]["versions"]
        if v.get("served")
    }

    def served() -> bool:
        for gv in sorted({gv for gv, _ in wanted}):
            status, body = cp.request("GET", f"/apis/{gv}")
            if status == 200:
                wanted.difference_update({(gv, r["name"]) for r in body.get("resources", [])})
        return not wanted

    wait_until("CRDs served", served, timeout=120, procs=[cp.procs["kube-apiserver"]], interval=0.2)


# --- objects -------------------------------------------------------------------------------------


def ensure_namespace(cp: ControlPlane, name: str, labels: Mapping[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}
    status, resp = cp.request("POST", "/api/v1/namespaces", body)
    if status == 409 and labels:
        status, resp = cp.request(
            "PATCH",
            f"/api/v1/namespaces/{name}",
            {"metadata": {"labels": dict(labels)}},
            content_type="application/merge-patch+json",
        )
    if status not in (200, 201, 409):
        raise RuntimeError(f"namespace {name}: HTTP {status}: {resp}")


def apply_object(
    cp: ControlPlane, obj: Mapping[str, Any], *, dry_run: bool = False, field_manager: str = "sonic-tests"
) -> tuple[int, Any]:
    """Server-side apply one object (the path `kubectl apply --server-side` takes)."""
    path = object_path(cp, obj)
    query = f"?fieldManager={field_manager}&force=true" + ("&dryRun=All" if dry_run else "")
    return cp.request("PATCH", path + query, dict(obj), content_type="application/apply-patch+yaml")


_RESOURCES: dict[str, dict[str, tuple[str, bool]]] = {}  # groupVersion -> kind -> (plural, namespaced)


def object_path(cp: ControlPlane, obj: Mapping[str, Any]) -> str:
    """The REST path of ``obj``, from API discovery (so CRDs resolve like built-in kinds)."""
    gv = obj["apiVersion"]
    if gv not in _RESOURCES or obj["kind"] not in _RESOURCES[gv]:
        base = f"/api/{gv}" if "/" not in gv else f"/apis/{gv}"
        status, body = cp.request("GET", base)
        if status != 200:
            raise LookupError(f"API {gv} is not served: HTTP {status}")
        _RESOURCES[gv] = {
            r["kind"]: (r["name"], bool(r["namespaced"])) for r in body["resources"] if "/" not in r["name"]
        }
    plural, namespaced = _RESOURCES[gv][obj["kind"]]
    base = f"/api/{gv}" if "/" not in gv else f"/apis/{gv}"
    meta = obj.get("metadata", {})
    if namespaced:
        return f"{base}/namespaces/{meta.get('namespace', 'default')}/{plural}/{meta['name']}"
    return f"{base}/{plural}/{meta['name']}"


# --- nodes ---------------------------------------------------------------------------------------


def fake_node(
    name: str,
    labels: Mapping[str, str],
    taints: Sequence[Mapping[str, str]] = (),
    gpus: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A Node kwok plays: Ready, with the capacity a GPU worker reports through its device plugin."""
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    capacity.update({k: str(v) for k, v in (gpus or {}).items()})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **dict(labels),
            },
        },
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def create_node(cp: ControlPlane, node: Mapping[str, Any]) -> None:
    status, body = cp.request("POST", "/api/v1/nodes", node)
    if status not in (201, 409):
        raise RuntimeError(f"node {node['metadata']['name']}: HTTP {status}: {body}")


def wait_nodes_ready(cp: ControlPlane, names: Sequence[str], timeout: float = 60) -> None:
    def ready() -> bool:
        _status, body = cp.request("GET", "/api/v1/nodes")
        conds = {
            n["metadata"]["name"]: {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
            for n in body["items"]
        }
        return all(conds.get(n, {}).get("Ready") == "True" for n in names)

    wait_until("kwok nodes Ready", ready, timeout=timeout, procs=[cp.procs["kwok"]], interval=0.25)


# --- controllers ---------------------------------------------------------------------------------

_HELD_SOCKETS: dict[int, list[socket.socket]] = {}


def _hold_wildcard_port(cp: ControlPlane, port: int) -> None:
    """Keep a loopback listener on ``port`` so a controller's hard-coded ``:port`` bind fails.

    Linux refuses a wildcard bind while a listener holds a specific address on that port, so the
    controller's extra endpoint never opens beyond 127.0.0.1.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with contextlib.suppress(OSError):  # already taken by something else: the bind fails anyway
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
    _HELD_SOCKETS.setdefault(id(cp), []).append(sock)


def _start_keda(cp: ControlPlane, logs: Path) -> None:
    ensure_namespace(cp, KEDA_NAMESPACE)
    certs = cp.workdir / "keda-certs"
    certs.mkdir()
    # The operator's gRPC metrics service (for the metrics adapter) wants a TLS pair and a CA.
    shutil.copyfile(cp.pki.ca_cert, certs / "ca.crt")
    shutil.copyfile(cp.pki.serving_cert, certs / "tls.crt")
    shutil.copyfile(cp.pki.serving_key, certs / "tls.key")
    metrics, probe, grpc = free_ports(3)
    env = cp.env() | {
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": KEDA_NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        "KEDA_HTTP_DEFAULT_TIMEOUT": "2000",
    }
    cp.procs["keda-operator"] = start(
        "keda-operator",
        [
            str(cp.bindir / "keda-operator"),
            f"--kubeconfig={cp.kubeconfig}",
            f"--metrics-bind-address=127.0.0.1:{metrics}",
            f"--health-probe-bind-address=127.0.0.1:{probe}",
            f"--metrics-service-bind-address=127.0.0.1:{grpc}",
            f"--cert-dir={certs}",
            "--enable-cert-rotation=false",
            "--leader-elect=false",
            f"--ca-dir={certs}",
            "--zap-log-level=info",
        ],
        logs / "keda-operator.log",
        env=env,
    )
    wait_until(
        "keda-operator /readyz",
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{probe}/readyz", timeout=2).status == 200,
        timeout=START_TIMEOUT,
        procs=[cp.procs["keda-operator"]],
        interval=0.25,
    )


WORKFLOW_CONTROLLER_CONFIG = {
    # No metrics or telemetry listeners here; the executor configured as docs/workflows.md asks
    # every cluster admin to (pipelines.workflows.controller).
    "metricsConfig": "enabled: false\n",
    "telemetryConfig": "enabled: false\n",
    **controller_config.configmap_data(),
}


def _start_argo_workflows(cp: ControlPlane, logs: Path) -> None:
    ensure_namespace(cp, ARGO_NAMESPACE)
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap", "namespace": ARGO_NAMESPACE},
        "data": WORKFLOW_CONTROLLER_CONFIG,
    }
    status, body = apply_object(cp, cm)
    if status not in (200, 201):
        raise StartError(f"workflow-controller-configmap: HTTP {status}: {body}")
    # cmd/workflow-controller/main.go serves pprof/health on a hard-coded ":6060".
    _hold_wildcard_port(cp, 6060)
    cp.procs["workflow-controller"] = start(
        "workflow-controller",
        [
            str(cp.bindir / "workflow-controller"),
            f"--kubeconfig={cp.kubeconfig}",
            f"--namespace={ARGO_NAMESPACE}",
            "--executor-image=quay.io/argoproj/argoexec:v4.0.7",
            "--loglevel=info",
            "--workflow-workers=4",
            "--pod-cleanup-workers=2",
        ],
        logs / "workflow-controller.log",
        # A one-second requeue instead of 10 s (docs/environment-variables.md): the same
        # decisions, sooner, so each DAG step does not wait out the rate limiter.
        env=cp.env() | {"LEADER_ELECTION_DISABLE": "true", "DEFAULT_REQUEUE_TIME": "1s"},
    )
    # Ready when it has listed Workflows: give it until its informers report in the log.
    time.sleep(0.5)
    if not cp.procs["workflow-controller"].alive():
        raise StartError(f"workflow-controller exited:\n{cp.procs['workflow-controller'].log_tail()}")


@contextlib.contextmanager
def running_control_plane(workdir: Path, bindir: Path) -> Iterator[ControlPlane]:
    cp = start_control_plane(workdir, bindir)
    try:
        yield cp
    finally:
        stop_control_plane(cp)


# --- what a site admin provides --------------------------------------------------------------------


def site_prerequisites(site: Any) -> list[dict[str, Any]]:
    """Objects a site admin creates before Argo CD syncs (docs/gitops.md): the StorageClass and
    claims the site file names, in every namespace granted to an experiment."""
    objs: list[dict[str, Any]] = []
    storage = site.storage
    if storage.cvmfs is not None and storage.cvmfs.storage_class:
        objs.append(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": storage.cvmfs.storage_class},
                # The CVMFS CSI driver's name; kwok has no CSI, so claims are bound statically
                # (provision_claims) as a pre-provisioned volume would be. WaitForFirstConsumer:
                # the mode that deadlocked early sync waves (issue 10.14), and the one the doctor
                # tests' site uses too (one StorageClass per name in a cluster: it is immutable).
                "provisioner": "cvmfs.csi.cern.ch",
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        )
    claims = list(storage.pvcs) + ([storage.snapshots.claim] if storage.snapshots else [])
    for grant in site.experiments.values():
        for ns in grant.namespaces:
            for claim in claims:
                objs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim, "namespace": ns},
                        "spec": {
                            "accessModes": ["ReadWriteMany"],
                            "storageClassName": "",
                            "resources": {"requests": {"storage": "10Gi"}},
                        },
                    }
                )
    return objs


# The cluster's default StorageClass (every real cluster has one: Argo's volumeClaimTemplates and
# claims without a class rely on it). Its volumes are made by the provisioner thread below.
DEFAULT_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "cvmfs.csi.cern.ch",
    "volumeBindingMode": "Immediate",
}


def _start_provisioner(cp: ControlPlane) -> None:
    """Play a CSI provisioner: bind every pending claim of an existing class, twice a second."""
    status, body = apply_object(cp, DEFAULT_STORAGE_CLASS, field_manager="site-admin")
    if status not in (200, 201):
        raise StartError(f"default StorageClass: HTTP {status}: {body}")
    stop_event = threading.Event()

    def loop() -> None:
        while not stop_event.wait(0.5):
            with contextlib.suppress(Exception):  # the API server going away at teardown
                provision_claims(cp)

    threading.Thread(target=loop, name="pv-provisioner", daemon=True).start()
    cp.provisioner = stop_event


def provision_claims(cp: ControlPlane) -> int:
    """Bind every pending claim to a new PersistentVolume made for it (static provisioning).

    kwok runs no CSI driver; the PV controller still does the binding, so a claim that names a
    StorageClass that does not exist, or asks for what no volume offers, stays Pending.
    """
    _status, body = cp.request("GET", "/api/v1/persistentvolumeclaims")
    made = 0
    for pvc in body.get("items", []):
        spec, meta = pvc["spec"], pvc["metadata"]
        if spec.get("volumeName"):
            continue
        sc = spec.get("storageClassName") or ""
        if sc:
            sc_status, _ = cp.request("GET", f"/apis/storage.k8s.io/v1/storageclasses/{sc}")
            if sc_status != 200:
                continue
        name = f"pv-{meta['namespace']}-{meta['name']}"[:63]
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec["accessModes"],
                "storageClassName": sc,
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                "csi": {"driver": "cvmfs.csi.cern.ch", "volumeHandle": name},
            },
        }
        st, resp = cp.request("POST", "/api/v1/persistentvolumes", pv)
        if st not in (201, 409):
            raise RuntimeError(f"PV for {meta['namespace']}/{meta['name']}: HTTP {st}: {resp}")
        made += 1
    return made
