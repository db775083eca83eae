"""The verdicts of each check on what the API server answered (pure functions, no cluster)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from pipelines.doctor.apis import kind_findings, provider
from pipelines.doctor.argocd import argocd_finding, registered_servers
from pipelines.doctor.cluster import ApiError, ApiResource, _warning_text
from pipelines.doctor.dryrun import outcome
from pipelines.doctor.ingress import ingress_class_finding
from pipelines.doctor.manifests import ClaimRef, KindRef, Manifest, SecretRef
from pipelines.doctor.namespaces import declared_finding, granted_finding, granted_namespaces, other_finding
from pipelines.doctor.prometheus import Answer, answer_finding, tokens_by_value
from pipelines.doctor.secrets import create_command, promised_secrets, secret_finding
from pipelines.doctor.storage import claim_finding, needed_claims, needed_classes
from tests.doctor.support import make_site

SITE = make_site()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- api.kinds -------------------------------------------------------------------------------------


def test_kinds_served_pass_per_group_version() -> None:
    needed = [
        KindRef("keda.sh", "v1alpha1", "ScaledObject"),
        KindRef("keda.sh", "v1alpha1", "TriggerAuthentication"),
    ]
    served = {"keda.sh/v1alpha1": {k.kind: ApiResource(k.kind, "x", True) for k in needed}}
    [f] = kind_findings(needed, {"keda.sh": ("v1alpha1",)}, served)
    assert (
        f.status == "pass"
        and f.target == "keda.sh/v1alpha1"
        and f.message == "serves ScaledObject, TriggerAuthentication"
    )


def test_a_version_the_crd_does_not_serve() -> None:
    ref = KindRef("keda.sh", "v1alpha2", "ScaledObject")
    [f] = kind_findings([ref], {"keda.sh": ("v1alpha1",)}, {"keda.sh/v1alpha2": None})
    assert f.failed and "the cluster serves keda.sh at v1alpha1 only" in f.message
    assert f.fix.startswith("install KEDA 2.10+") and "which serves keda.sh/v1alpha2" in f.fix


def test_a_kind_whose_crd_is_missing_from_a_served_group() -> None:
    ref = KindRef("argoproj.io", "v1alpha1", "ApplicationSet")
    served = {"argoproj.io/v1alpha1": {"Workflow": ApiResource("Workflow", "workflows", True)}}
    [f] = kind_findings([ref], {"argoproj.io": ("v1alpha1",)}, served)
    assert f.failed and "has no kind ApplicationSet (its CRD is not installed)" in f.message
    assert "Argo CD 2.8+" in f.fix


def test_a_group_nobody_installed() -> None:
    [f] = kind_findings(
        [KindRef("monitoring.coreos.com", "v1", "ServiceMonitor")], {}, {"monitoring.coreos.com/v1": None}
    )
    assert f.failed and "the API group monitoring.coreos.com is not served" in f.message
    assert "Prometheus Operator" in f.fix and "prometheus.operator: false" in f.fix


def test_providers_tell_the_argo_projects_apart() -> None:
    assert "Argo Workflows" in (provider(KindRef("argoproj.io", "v1alpha1", "CronWorkflow")) or "")
    assert "Argo Events" in (provider(KindRef("argoproj.io", "v1alpha1", "Sensor")) or "")
    assert "Argo CD" in (provider(KindRef("argoproj.io", "v1alpha1", "AppProject")) or "")
    assert provider(KindRef("apps", "v1", "Deployment")) is None


# --- namespaces ------------------------------------------------------------------------------------


def ns(labels: dict[str, str] | None = None, phase: str = "Active") -> dict[str, Any]:
    return {"metadata": {"name": "x", "labels": labels or {}}, "status": {"phase": phase}}


def test_granted_namespaces_name_their_experiments() -> None:
    assert granted_namespaces(SITE) == {"atlas": ("atlas",), "cms": ("cms",), "cms-dev": ("cms",)}


def test_granted_namespace_verdicts() -> None:
    ok = granted_finding("cms", ("cms",), ns({"pod-security.kubernetes.io/enforce": "restricted"}))
    assert ok.status == "pass"
    missing = granted_finding("cms", ("cms",), None)
    assert missing.failed and missing.fix == (
        "kubectl create namespace cms && kubectl label namespace cms pod-security.kubernetes.io/enforce=restricted"
    )
    unlabelled = granted_finding("cms", ("cms",), ns())
    assert (
        unlabelled.fix
        == "label namespace cms: kubectl label namespace cms pod-security.kubernetes.io/enforce=restricted"
    )
    privileged = granted_finding("cms", ("cms",), ns({"pod-security.kubernetes.io/enforce": "privileged"}))
    assert (
        privileged.failed
        and "'privileged', not 'restricted'" in privileged.message
        and privileged.fix.endswith("--overwrite")
    )
    going = granted_finding(
        "cms", ("cms",), ns({"pod-security.kubernetes.io/enforce": "restricted"}, "Terminating")
    )
    assert going.failed and "being deleted" in going.message


def test_declared_and_other_namespaces() -> None:
    f = declared_finding(SITE, "monitoring", "prometheus.namespace", "why", None)
    assert f.failed and "set prometheus.namespace in gitops/sites/testsite.yaml" in f.fix
    other = other_finding(
        "sonic-pipelines", ("gitops/workflows/rollout.yaml",), "gitops/workflows/common.yaml", None
    )
    assert other.failed and other.fix == "kubectl apply -f gitops/workflows/common.yaml"
    assert other_finding("x", ("a.yaml",), None, None).fix == "kubectl create namespace x"


# --- ingress, storage, secrets ---------------------------------------------------------------------


def test_ingress_class() -> None:
    assert ingress_class_finding(SITE, True, [], "k8s.io/ingress-nginx").status == "pass"
    f = ingress_class_finding(SITE, False, ["haproxy", "traefik"])
    assert f.failed and "the cluster has: haproxy, traefik" in f.message
    assert ingress_class_finding(make_site(ingress=None), False, []).status == "skip"


def test_snapshot_claims_are_needed_in_every_granted_namespace() -> None:
    claims = needed_claims(
        SITE,
        [
            ClaimRef("cms", "snapshots", ("gitops/workflows/b.yaml",)),
            ClaimRef("cms", "team-models", ("d.yaml",)),
        ],
    )
    assert [(c.namespace, c.name, c.used_by, c.shared_writable) for c in claims] == [
        ("atlas", "snapshots", ("storage.snapshots.claim",), True),
        ("cms", "snapshots", ("storage.snapshots.claim", "gitops/workflows/b.yaml"), True),
        ("cms", "team-models", ("d.yaml",), False),
        ("cms-dev", "snapshots", ("storage.snapshots.claim",), True),
    ]
    assert needed_classes(SITE, {"cvmfs": ("pvc.yaml",), "fast": ("x.yaml",)}) == {
        "cvmfs": ("storage.cvmfs.storageClass", "pvc.yaml"),
        "fast": ("x.yaml",),
    }


def test_claim_verdicts() -> None:
    [snap] = [c for c in needed_claims(SITE, []) if c.namespace == "cms"]
    rwx = {"spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Bound"}}
    assert claim_finding(SITE, snap, rwx).status == "pass"
    pending = {"spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Pending"}}
    assert claim_finding(SITE, snap, pending).status == "pass"  # WaitForFirstConsumer
    rwo = claim_finding(
        SITE, snap, {"spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Bound"}}
    )
    assert rwo.failed and "needs ReadWriteMany" in rwo.message
    lost = claim_finding(
        SITE, snap, {"spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Lost"}}
    )
    assert lost.failed
    missing = claim_finding(SITE, snap, None)
    assert (
        missing.failed
        and "does not exist in namespace cms" in missing.message
        and "ReadWriteMany" in missing.fix
    )


def test_the_site_file_promises_secrets_in_every_granted_namespace() -> None:
    refs = promised_secrets(SITE)
    assert {(r.namespace, r.name) for r in refs} == {
        (ns, name) for ns in ("atlas", "cms", "cms-dev") for name in ("prometheus-token", "wildcard-tls")
    }


def test_secret_verdicts_never_show_values() -> None:
    ref = SecretRef("cms", "prometheus-token", ("token",), ("a.yaml",))
    ok = secret_finding(ref, {"data": {"token": b64("hunter2")}})
    assert ok.status == "pass" and "hunter2" not in ok.message
    missing = secret_finding(ref, None)
    assert (
        missing.failed
        and missing.fix == "kubectl create secret generic prometheus-token -n cms --from-file=token=FILE"
    )
    lacking = secret_finding(ref, {"data": {"bearer": b64("hunter2")}})
    assert lacking.failed and "lacks key(s) token" in lacking.message and "it has: bearer" in lacking.message
    assert secret_finding(SecretRef("cms", "x", (), ("a",), optional=True), None).status == "skip"
    tls = SecretRef("cms", "site-tls", ("tls.crt", "tls.key"), ("i.yaml",), tls=True)
    assert create_command(tls) == "kubectl create secret tls site-tls -n cms --cert=CERT.pem --key=KEY.pem"


# --- Prometheus ------------------------------------------------------------------------------------


def test_tokens_grouped_by_value() -> None:
    secrets = {
        "atlas": {"data": {"token": b64("one\n")}},
        "cms": {"data": {"token": b64("one")}},
        "cms-dev": None,
    }
    tokens, lacking = tokens_by_value(SITE, secrets)
    assert tokens == {"one": ["atlas", "cms"]} and lacking == ["cms-dev"]


def test_prometheus_answer_verdicts() -> None:
    url = "https://prometheus.example.org"
    ok = answer_finding(
        SITE, url, False, Answer("", "vector(1) = 1"), "Secret cms/prometheus-token (key token)"
    )
    assert ok.status == "pass" and "with the token of Secret cms/prometheus-token" in ok.message
    auth = answer_finding(SITE, url, False, Answer("auth", "HTTP 401: no"), "Secret cms/p (key token)")
    assert auth.failed and auth.fix == "put a token Prometheus accepts into Secret cms/p (key token)"
    away = answer_finding(SITE, url, False, Answer("unreachable", "ConnectError"), "")
    assert (
        "kubectl port-forward -n monitoring svc/PROMETHEUS 9090" in away.fix
        and "--prometheus-url" in away.fix
    )
    tls = answer_finding(SITE, url, True, Answer("tls", "x"), "")
    assert "--prometheus-ca FILE" in tls.fix


# --- Argo CD ---------------------------------------------------------------------------------------


def cluster_secret(name: str, server: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"server": b64(server)}}


def test_argocd_destination_verdicts() -> None:
    registered = [cluster_secret("prod", "https://k8s.example.org:6443/")]
    assert registered_servers(registered) == {"https://k8s.example.org:6443/": "prod"}
    ok = argocd_finding(SITE, True, registered, None)
    assert ok.status == "pass" and "argocd/prod" in ok.message  # a trailing slash is the same server
    unknown = argocd_finding(SITE, True, [cluster_secret("other", "https://other:6443")], None)
    assert unknown.failed and "it knows: https://other:6443" in unknown.message
    assert "argocd cluster add CONTEXT --name testsite" in unknown.fix
    assert argocd_finding(SITE, False, [], None).failed
    in_cluster = make_site(argocd={"server": "https://kubernetes.default.svc", "namespace": "argocd"})
    assert argocd_finding(in_cluster, True, [], None).status == "pass"
    disabled = argocd_finding(in_cluster, True, [], {"data": {"cluster.inClusterEnabled": "false"}})
    assert disabled.failed and "inClusterEnabled" in disabled.message


# --- dry run ---------------------------------------------------------------------------------------


def test_dry_run_outcomes() -> None:
    m = Manifest(
        "gitops/rendered/s/e/d/deployment.yaml",
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
    )
    assert outcome(m, None, ()) is None
    refused = outcome(m, ApiError(422, "spec.replicas: Invalid value: -1"), ())
    assert (
        refused is not None
        and refused.failed
        and refused.target == "gitops/rendered/s/e/d/deployment.yaml Deployment/d"
    )
    assert "sonic render" in refused.fix
    pss = outcome(m, None, ('would violate PodSecurity "restricted:latest": host namespaces',))
    assert pss is not None and pss.failed and "its pods would be refused" in pss.message
    warned = outcome(m, None, ("metadata.finalizers: prefer a domain-qualified finalizer name",))
    assert warned is not None and warned.status == "pass"
    wf = Manifest("gitops/workflows/rollout.yaml", {"kind": "Role", "metadata": {"name": "r"}})
    wf_refused = outcome(wf, ApiError(403, "forbidden"), ())
    assert wf_refused is not None and "sonic pipelines render" in wf_refused.fix


def test_warning_headers_are_unwrapped() -> None:
    assert _warning_text('299 - "would violate PodSecurity \\"restricted:latest\\": x"') == (
        'would violate PodSecurity "restricted:latest": x'
    )
    assert _warning_text("plain") == "plain"


def test_asking_prometheus_never_raises(tmp_path: Path) -> None:
    from pipelines.doctor.prometheus import ask
    from pipelines.local.processes import free_port

    url = f"http://127.0.0.1:{free_port()}"
    answer = ask(url, "token", None)
    assert answer.problem == "unreachable" and "ConnectError" in answer.detail
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    answer = ask(url, "token", bad)
    assert answer.problem == "tls" and str(bad) in answer.detail
