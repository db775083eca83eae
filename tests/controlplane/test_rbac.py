"""Least privilege, decided by the real API server's RBAC authorizer.

Every ServiceAccount the pipelines run as gets exactly the API calls its steps make, and nothing
of what a compromised step could abuse. Each question is a SubjectAccessReview: the authorizer
answers it from the rendered Roles and RoleBindings, with the groups a ServiceAccount token
carries (system:serviceaccounts, system:serviceaccounts:<ns>, system:authenticated) and the
default ClusterRoles every cluster has (system:basic-user, system:discovery, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "gitops" / "workflows"
PIPELINES_NS = "sonic-pipelines"


def allowed(
    cp: ControlPlane,
    sa: tuple[str, str],
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    subresource: str = "",
) -> bool:
    ns, name = sa
    attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
    if namespace is not None:
        attrs["namespace"] = namespace
    if subresource:
        attrs["subresource"] = subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{ns}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            "resourceAttributes": attrs,
        },
    }
    status, body = cp.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, body
    return bool(body["status"].get("allowed"))


ROLLOUT = (PIPELINES_NS, "sonic-rollout")
EXECUTOR = (PIPELINES_NS, "sonic-workflow-executor")
SENSOR = (PIPELINES_NS, "sonic-events-sensor")
STEP_ACCOUNTS = [
    (PIPELINES_NS, "sonic-pr-validation"),
    (PIPELINES_NS, "sonic-scheduled-validation"),
    ROLLOUT,
]


def experiment_executors() -> list[tuple[str, str]]:
    out = []
    for path in sorted(WORKFLOWS.glob("build-model-repository-*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d and d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "sonic-workflow-executor":
                out.append((d["metadata"]["namespace"], d["metadata"]["name"]))
    return sorted(set(out))


def test_rollout_wait_reads_applications_and_nothing_else(rbac: ControlPlane) -> None:
    for verb in ("get", "list", "watch"):
        assert allowed(rbac, ROLLOUT, verb, "applications", group="argoproj.io", namespace="argocd")
    # Writing Applications is Argo CD's job; a rollout only watches (and reverts through git).
    for verb in ("create", "update", "patch", "delete"):
        assert not allowed(rbac, ROLLOUT, verb, "applications", group="argoproj.io", namespace="argocd")
    assert not allowed(rbac, ROLLOUT, "get", "secrets", namespace="argocd")  # cluster credentials live there
    assert not allowed(rbac, ROLLOUT, "list", "applications", group="argoproj.io", namespace="default")


@pytest.mark.parametrize("sa", [EXECUTOR, *experiment_executors()], ids=lambda s: f"{s[0]}/{s[1]}")
def test_executor_reports_results_in_its_own_namespace_only(rbac: ControlPlane, sa: tuple[str, str]) -> None:
    ns = sa[0]
    for verb in ("create", "patch"):
        assert allowed(rbac, sa, verb, "workflowtaskresults", group="argoproj.io", namespace=ns)
    other = "kube-system"
    assert not allowed(rbac, sa, "create", "workflowtaskresults", group="argoproj.io", namespace=other)
    assert not allowed(rbac, sa, "get", "secrets", namespace=ns)
    assert not allowed(rbac, sa, "patch", "workflows", group="argoproj.io", namespace=ns)


def test_sensor_may_only_submit_workflows(rbac: ControlPlane) -> None:
    assert allowed(rbac, SENSOR, "create", "workflows", group="argoproj.io", namespace=PIPELINES_NS)
    assert not allowed(rbac, SENSOR, "delete", "workflows", group="argoproj.io", namespace=PIPELINES_NS)
    assert not allowed(
        rbac, SENSOR, "create", "workflowtemplates", group="argoproj.io", namespace=PIPELINES_NS
    )
    assert not allowed(rbac, SENSOR, "get", "secrets", namespace=PIPELINES_NS)


@pytest.mark.parametrize(
    "sa", [*STEP_ACCOUNTS, EXECUTOR, SENSOR, *experiment_executors()], ids=lambda s: f"{s[0]}/{s[1]}"
)
def test_no_pipeline_account_reaches_secrets_or_cluster_scope(
    rbac: ControlPlane, sa: tuple[str, str]
) -> None:
    """What a compromised step must never do: read Secrets (its own namespace's or another's),
    run pods, or write anything cluster-scoped."""
    for ns in (sa[0], "argocd", "kube-system", "cms"):
        assert not allowed(rbac, sa, "get", "secrets", namespace=ns), f"{sa} reads Secrets in {ns}"
        assert not allowed(rbac, sa, "list", "secrets", namespace=ns)
    assert not allowed(rbac, sa, "create", "pods", namespace=sa[0])
    assert not allowed(rbac, sa, "create", "pods", subresource="exec", namespace=sa[0])
    assert not allowed(rbac, sa, "create", "namespaces")
    assert not allowed(rbac, sa, "create", "clusterrolebindings", group="rbac.authorization.k8s.io")
    assert not allowed(rbac, sa, "update", "customresourcedefinitions", group="apiextensions.k8s.io")
    assert not allowed(rbac, sa, "create", "serviceaccounts", subresource="token", namespace=sa[0])


def test_step_accounts_have_no_kubernetes_api_access_beyond_rollout(rbac: ControlPlane) -> None:
    """pr-validation and scheduled checks talk to GitHub and the endpoints, not to Kubernetes."""
    for sa in STEP_ACCOUNTS[:2]:
        for resource, group in (
            ("workflowtaskresults", "argoproj.io"),
            ("applications", "argoproj.io"),
            ("configmaps", ""),
            ("pods", ""),
        ):
            for ns in (sa[0], "argocd"):
                assert not allowed(rbac, sa, "list", resource, group=group, namespace=ns), (sa, resource, ns)
