"""`sonic site doctor` against the real control plane, as a site admin runs it (a subprocess).

One site (geddes: autoscaled GPU deployment, Ingress, CVMFS StorageClass, Prometheus Operator
with a bearer token, a remote Argo CD destination; its declared 1.29-1.33 contains the control
plane's 1.31) is bootstrapped the way docs/gitops.md says, with a real Prometheus behind a
token-checking TLS front: the doctor passes. Then each check is made to fail once, by breaking
the cluster (and repairing it afterwards) where that stays invisible to other tests, else by
changing a private copy of the repository's site file or rendered tree; each failure must be
the only one, say what is wrong, say what to do, and exit 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.config.checked import load_tree
from pipelines.config.model import Site
from pipelines.local.processes import free_port
from pipelines.local.prometheus import prometheus_binary
from tests.controlplane.doctor_support import (
    PIPELINES_NAMESPACE,
    ROOT,
    DoctorRun,
    PrometheusEndpoint,
    edit_site,
    edit_yaml,
    must_apply,
    prepare_site,
    prometheus_behind_token,
    repo_copy,
    run_doctor,
    secret,
)
from tests.support.controlplane import ControlPlane

SITE = "geddes"
TOKEN = "doctor-test-token"
RENDERED = f"gitops/rendered/{SITE}/cms/particlenet"
ALL_CHECKS = {
    "kubernetes.version",
    "api.kinds",
    "namespace",
    "ingress.class",
    "storage.class",
    "storage.claim",
    "secret",
    "gpu.class",
    "prometheus.query",
    "argocd.cluster",
    "apply.dry-run",
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusEndpoint]:
    if prometheus_binary() is None:
        pytest.skip("Prometheus is not installed (apt-get install prometheus)")
    with prometheus_behind_token(tmp_path_factory.mktemp("prometheus"), TOKEN) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def site(control_plane: ControlPlane, prometheus: PrometheusEndpoint) -> Site:
    """The site, bootstrapped on the control plane."""
    config = load_tree(ROOT).sites[SITE]
    prepare_site(control_plane, config, prometheus.token)
    return config


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return repo_copy(tmp_path / "repo")


Doctor = Callable[..., DoctorRun]


@pytest.fixture
def doctor(control_plane: ControlPlane, prometheus: PrometheusEndpoint, site: Site) -> Doctor:
    """`sonic site doctor geddes` with the admin kubeconfig and the local Prometheus (and its CA)."""

    def run(*args: str, root: Path = ROOT, prometheus_args: tuple[str, ...] | None = None) -> DoctorRun:
        if prometheus_args is None:
            prometheus_args = (
                "--prometheus-url",
                prometheus.url,
                "--prometheus-ca",
                str(prometheus.tls.ca_cert),
            )
        return run_doctor(control_plane, SITE, *prometheus_args, *args, root=root)

    return run


def only_failure(run: DoctorRun, check: str) -> dict[str, Any]:
    """The single failed finding of ``run``, which must belong to ``check``; exit code 1."""
    assert run.code == 1, f"exit {run.code}: {run.stderr}\n{run.explain()}"
    failures = run.failures()
    assert [f["check"] for f in failures] == [check], run.explain()
    assert failures[0]["fix"], "every failure says what to do"
    return failures[0]


# --- a bootstrapped site passes ----------------------------------------------------------------------


def test_a_bootstrapped_site_passes(doctor: Doctor) -> None:
    run = doctor()
    assert run.code == 0, run.explain()
    report = run.report
    assert report["passed"] is True and report["site"] == SITE
    checks = {c["check"] for c in report["checks"]}
    assert checks >= ALL_CHECKS, f"checks that did not run: {ALL_CHECKS - checks}"
    by_check = {c["check"]: c for c in report["checks"] if c["status"] == "pass"}
    # What makes the pass meaningful: the right things were looked at.
    assert "1.31" in by_check["kubernetes.version"]["message"]
    kinds = " ".join(c["message"] for c in report["checks"] if c["check"] == "api.kinds")
    for kind in (
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceMonitor",
        "PrometheusRule",
        "Application",
        "ApplicationSet",
        "AppProject",
        "WorkflowTemplate",
        "CronWorkflow",
        "Workflow",
    ):
        assert kind in kinds
    assert "vector(1) = 1" in by_check["prometheus.query"]["message"]
    dry = [c for c in report["checks"] if c["check"] == "apply.dry-run" and c["status"] == "pass"]
    assert int(dry[0]["target"].split()[0]) >= 30, (
        dry
    )  # the whole rendered tree, Argo CD and workflow objects


def test_the_table_says_passed(
    doctor: Doctor, control_plane: ControlPlane, prometheus: PrometheusEndpoint
) -> None:
    run = run_doctor(
        control_plane,
        SITE,
        "--prometheus-url",
        prometheus.url,
        "--prometheus-ca",
        str(prometheus.tls.ca_cert),
        fmt="table",
    )
    assert run.code == 0, run.stdout + run.stderr
    assert "PASSED" in run.stdout and "apply.dry-run" in run.stdout
    assert "Traceback" not in run.stderr


def test_webhook_clusters_need_argo_events(doctor: Doctor) -> None:
    run = doctor("--receives-webhooks")
    assert run.code == 0, run.explain()
    kinds = " ".join(c["message"] for c in run.report["checks"] if c["check"] == "api.kinds")
    assert "EventSource" in kinds and "Sensor" in kinds


# --- one failure per check ---------------------------------------------------------------------------


def test_kubernetes_outside_the_declared_range(doctor: Doctor, copy: Path) -> None:
    edit_site(copy, SITE, lambda s: s.update(kubernetes={"minVersion": "1.32", "maxVersion": "1.34"}))
    f = only_failure(doctor(root=copy), "kubernetes.version")
    assert "Kubernetes 1.31 is older than the declared 1.32-1.34" in f["message"]
    assert "kubernetes.minVersion/maxVersion" in f["fix"]


def _scaledobject_v1alpha2(root: Path) -> None:
    def change(docs: list[dict[str, Any]]) -> None:
        docs[0]["apiVersion"] = "keda.sh/v1alpha2"

    edit_yaml(root / RENDERED / "scaledobject.yaml", change)


def _add_probe(root: Path) -> None:
    """A kind of a served group whose CRD is not installed (the Prometheus Operator's Probe)."""
    (root / RENDERED / "probe.yaml").write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: Probe\nmetadata: {name: particlenet}\nspec: {}\n"
    )
    edit_yaml(root / RENDERED / "kustomization.yaml", lambda docs: docs[0]["resources"].append("probe.yaml"))


@pytest.mark.parametrize(
    ("breaks", "target", "message", "fix"),
    [
        (
            _scaledobject_v1alpha2,
            "keda.sh/v1alpha2 ScaledObject",
            "ScaledObject is not served at keda.sh/v1alpha2: the cluster serves keda.sh at v1alpha1 only",
            "install KEDA 2.10+",
        ),
        (
            _add_probe,
            "monitoring.coreos.com/v1 Probe",
            "monitoring.coreos.com/v1 is served but has no kind Probe (its CRD is not installed)",
            "the Prometheus Operator CRDs",
        ),
    ],
    ids=["version-not-served", "crd-missing"],
)
def test_a_kind_the_cluster_does_not_serve(
    doctor: Doctor, copy: Path, breaks: Callable[[Path], None], target: str, message: str, fix: str
) -> None:
    breaks(copy)
    run = doctor(root=copy)
    f = only_failure(run, "api.kinds")
    assert f["target"] == target and message in f["message"] and fix in f["fix"]
    # The object is not also sent to the dry run (one cause, reported once).
    skipped = [c for c in run.report["checks"] if c["check"] == "apply.dry-run" and c["status"] == "skip"]
    assert skipped and "see api.kinds" in skipped[0]["message"]


@pytest.mark.parametrize(
    ("level", "message", "fix"),
    [
        (
            None,
            "has no pod-security.kubernetes.io/enforce label",
            "label namespace cms-sonic: kubectl label namespace cms-sonic pod-security.kubernetes.io/enforce=restricted",
        ),
        (
            "baseline",
            "enforces Pod Security 'baseline', not 'restricted'",
            "label namespace cms-sonic: kubectl label namespace cms-sonic pod-security.kubernetes.io/enforce=restricted "
            "--overwrite",
        ),
    ],
    ids=["unlabelled", "baseline"],
)
def test_a_granted_namespace_without_pod_security(
    doctor: Doctor, control_plane: ControlPlane, level: str | None, message: str, fix: str
) -> None:
    label = "pod-security.kubernetes.io/enforce"

    def set_level(value: str | None) -> None:
        status, body = control_plane.request(
            "PATCH",
            "/api/v1/namespaces/cms-sonic",
            {"metadata": {"labels": {label: value}}},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body

    set_level(level)
    try:
        f = only_failure(doctor(), "namespace")
    finally:
        set_level("restricted")
    assert f["target"] == "cms-sonic" and message in f["message"] and f["fix"] == fix


@pytest.mark.parametrize(
    ("change", "name", "field"),
    [
        (
            lambda s: s["prometheus"].update(namespace="kube-prometheus"),
            "kube-prometheus",
            "prometheus.namespace",
        ),
        (lambda s: s["ingress"].update(namespace="ingress-haproxy"), "ingress-haproxy", "ingress.namespace"),
    ],
    ids=["prometheus", "ingress-controller"],
)
def test_a_declared_namespace_that_does_not_exist(
    doctor: Doctor, copy: Path, change: Callable[[dict[str, Any]], None], name: str, field: str
) -> None:
    edit_site(copy, SITE, change)
    f = only_failure(doctor(root=copy), "namespace")
    assert f["target"] == name
    assert f"namespace {name} ({field}) does not exist" in f["message"]
    assert f"set {field} in gitops/sites/{SITE}.yaml" in f["fix"]


def test_the_ingress_class_does_not_exist(doctor: Doctor, copy: Path) -> None:
    edit_site(copy, SITE, lambda s: s["ingress"].update(className="haproxy-public"))
    f = only_failure(doctor(root=copy), "ingress.class")
    assert "IngressClass haproxy-public (ingress.className) does not exist; the cluster has: " in f["message"]
    assert "public" in f["message"].split("the cluster has: ")[1]
    assert "set ingress.className" in f["fix"]


def test_the_storage_class_does_not_exist(doctor: Doctor, copy: Path) -> None:
    edit_site(copy, SITE, lambda s: s["storage"]["cvmfs"].update(storageClass="csi-cvmfs-absent"))
    f = only_failure(doctor(root=copy), "storage.class")
    assert f["target"] == "csi-cvmfs-absent"
    assert "StorageClass csi-cvmfs-absent (used by storage.cvmfs.storageClass) does not exist" in f["message"]
    assert "install the CSI driver and StorageClass csi-cvmfs-absent" in f["fix"]


def test_the_snapshot_claim_does_not_exist(doctor: Doctor, copy: Path) -> None:
    edit_site(copy, SITE, lambda s: s["storage"]["snapshots"].update(claim="model-snapshots"))
    f = only_failure(doctor(root=copy), "storage.claim")
    assert f["target"] == "cms-sonic/model-snapshots"
    assert "PersistentVolumeClaim model-snapshots does not exist in namespace cms-sonic" in f["message"]
    assert "ReadWriteMany" in f["fix"]


def test_the_snapshot_claim_is_not_shared_writable(
    doctor: Doctor, copy: Path, control_plane: ControlPlane
) -> None:
    must_apply(
        control_plane,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "snapshots-rwo", "namespace": "cms-sonic"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    edit_site(copy, SITE, lambda s: s["storage"]["snapshots"].update(claim="snapshots-rwo"))
    f = only_failure(doctor(root=copy), "storage.claim")
    assert "has access modes ReadWriteOnce" in f["message"] and "needs ReadWriteMany" in f["message"]


def test_a_secret_the_workflows_read_is_missing(doctor: Doctor, control_plane: ControlPlane) -> None:
    name = "sonic-gitops-push-token"
    status, body = control_plane.request("DELETE", f"/api/v1/namespaces/{PIPELINES_NAMESPACE}/secrets/{name}")
    assert status == 200, body
    try:
        f = only_failure(doctor(), "secret")
    finally:
        must_apply(control_plane, secret(PIPELINES_NAMESPACE, name, {"token": "pipeline-token"}))
    assert f["target"] == f"{PIPELINES_NAMESPACE}/{name}"
    assert "read by gitops/workflows/rollout.yaml" in f["message"]
    assert f["fix"] == f"kubectl create secret generic {name} -n {PIPELINES_NAMESPACE} --from-file=token=FILE"


@pytest.mark.parametrize(
    ("gpu_class", "message", "fix"),
    [
        (
            {"products": ["NVIDIA-H100-80GB-HBM3"]},
            "no node carries the labels of GPU class A100 (cms-af-prod=true, nvidia.com/gpu.product in "
            "(NVIDIA-H100-80GB-HBM3)); GPU products on the nodes: ",
            "kubectl label node NODE cms-af-prod=true",
        ),
        (
            {"tolerations": []},
            "nodes of A100 are tainted and the class does not tolerate it: geddes-a100-0-0 has "
            "hub.jupyter.org/dedicated=cms-af:NoSchedule",
            "add the toleration to gpuClasses.A100.tolerations",
        ),
    ],
    ids=["no-node-with-the-product", "taint-not-tolerated"],
)
def test_no_node_takes_the_gpu_class(
    doctor: Doctor, copy: Path, gpu_class: dict[str, Any], message: str, fix: str
) -> None:
    edit_site(copy, SITE, lambda s: s["gpuClasses"]["A100"].update(gpu_class))
    f = only_failure(doctor(root=copy), "gpu.class")
    assert f["target"] == "A100" and message in f["message"] and fix in f["fix"]


def test_prometheus_refuses_the_token_in_the_secret(
    doctor: Doctor, control_plane: ControlPlane, site: Site
) -> None:
    assert site.prometheus is not None and site.prometheus.auth is not None
    ref = site.prometheus.auth.secret_ref
    must_apply(control_plane, secret("cms-sonic", ref.name, {ref.key: "stale-token"}))
    try:
        f = only_failure(doctor(), "prometheus.query")
    finally:
        must_apply(control_plane, secret("cms-sonic", ref.name, {ref.key: TOKEN}))
    assert (
        "with the token of Secret cms-sonic/prometheus-token (key token) did not answer vector(1): HTTP 401"
        in f["message"]
    )
    assert f["fix"] == "put a token Prometheus accepts into Secret cms-sonic/prometheus-token (key token)"


def test_prometheus_certificate_not_trusted(doctor: Doctor, prometheus: PrometheusEndpoint) -> None:
    f = only_failure(doctor(prometheus_args=("--prometheus-url", prometheus.url)), "prometheus.query")
    assert "TLS verification failed" in f["message"] and "CERTIFICATE_VERIFY_FAILED" in f["message"]
    assert "--prometheus-ca FILE" in f["fix"]


def test_prometheus_unreachable(doctor: Doctor) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    f = only_failure(doctor(prometheus_args=("--prometheus-url", url)), "prometheus.query")
    assert f"Prometheus at {url}" in f["message"] and "ConnectError" in f["message"]
    assert "--prometheus-url" in f["fix"]


def test_argocd_does_not_know_the_destination(doctor: Doctor, copy: Path) -> None:
    edit_site(copy, SITE, lambda s: s["argocd"].update(server="https://geddes-new.k8s.rcac.purdue.edu:6443"))
    f = only_failure(doctor(root=copy), "argocd.cluster")
    assert (
        "Argo CD in argocd has no cluster Secret for https://geddes-new.k8s.rcac.purdue.edu:6443"
        in f["message"]
    )
    assert "https://geddes.k8s.rcac.purdue.edu" in f["message"]  # what it does know
    assert "argocd cluster add CONTEXT --name geddes" in f["fix"]


def test_argocd_in_cluster_destination_needs_no_secret(doctor: Doctor, copy: Path) -> None:
    edit_site(copy, SITE, lambda s: s["argocd"].update(server="https://kubernetes.default.svc"))
    run = doctor(root=copy)
    assert run.code == 0, run.explain()
    [f] = [c for c in run.report["checks"] if c["check"] == "argocd.cluster"]
    assert "in-cluster destination" in f["message"]


def _negative_replicas(docs: list[dict[str, Any]]) -> None:
    envoy = next(d for d in docs if d["metadata"]["name"] == "particlenet-envoy")
    envoy["spec"]["replicas"] = -1


def _host_network_triton(docs: list[dict[str, Any]]) -> None:
    """Valid for the API, refused by Pod Security (restricted and baseline) when the pods are created."""
    triton = next(d for d in docs if d["metadata"]["name"] == "particlenet-triton")
    triton["spec"]["template"]["spec"]["hostNetwork"] = True


@pytest.mark.parametrize(
    ("change", "name", "message"),
    [
        (_negative_replicas, "particlenet-envoy", "refused (HTTP 422): "),
        (
            _host_network_triton,
            "particlenet-triton",
            'its pods would be refused: would violate PodSecurity "restricted',
        ),
    ],
    ids=["invalid", "pod-security"],
)
def test_the_dry_run_names_the_refused_file(
    doctor: Doctor, copy: Path, change: Callable[[list[dict[str, Any]]], None], name: str, message: str
) -> None:
    edit_yaml(copy / RENDERED / "deployment.yaml", change)
    f = only_failure(doctor(root=copy), "apply.dry-run")
    assert f["target"] == f"{RENDERED}/deployment.yaml Deployment/{name}"
    assert message in f["message"]
    if name == "particlenet-envoy":
        assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in f["message"]
    assert "sonic render" in f["fix"]


# --- environment errors ------------------------------------------------------------------------------


def test_refused_credentials_are_an_environment_error(control_plane: ControlPlane, tmp_path: Path) -> None:
    """A kubeconfig the server rejects (no client certificate): exit 2, a sentence, no traceback."""
    import yaml

    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": "not-a-valid-token"}
    kubeconfig = tmp_path / "bad.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    bad = ControlPlane(
        workdir=control_plane.workdir,
        bindir=control_plane.bindir,
        pki=control_plane.pki,
        server=control_plane.server,
        kubeconfig=kubeconfig,
    )
    run = run_doctor(bad, SITE)
    assert run.code == 2, run.stdout + run.stderr
    assert "HTTP 401" in run.stderr and "credentials were refused" in run.stderr
    assert "Traceback" not in run.stderr
