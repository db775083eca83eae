"""ServiceAccounts, Roles and RoleBindings: one identity per workflow, each with the least it needs.

| identity | may | why |
|---|---|---|
| ``sonic-pr-validation`` | nothing | its steps call GitHub, not Kubernetes; no token is mounted |
| ``sonic-build-models`` | nothing | writes a volume; no token is mounted |
| ``sonic-scheduled-validation`` | nothing | calls deployments' endpoints; no token is mounted |
| ``sonic-rollout`` | get/list/watch ``applications.argoproj.io`` in Argo CD's namespace | waits for sync and health |
| ``sonic-workflow-executor`` | create/patch ``workflowtaskresults`` | Argo's wait container reports step outputs |

Only two of them let Kubernetes mount a token, and both for a reason: ``sonic-rollout`` because
Argo copies a template's ``automountServiceAccountToken`` to the pod only when it is false
(``workflow/controller/workflowpod.go``, setupServiceAccount), so the ``wait`` step's token
comes from the account; every other rollout step turns it off in the workflow spec. The
executor's token is mounted by Argo itself from the Secret ``<account>.service-account-token``
(``util/secrets/secret_name.go``), which Kubernetes >= 1.24 no longer creates on its own.
| ``sonic-events-sensor`` | create ``workflows`` in the pipelines namespace | submits ``pr-validation`` |
"""

from __future__ import annotations

from typing import Any

from pipelines.workflows.steps import EXECUTOR_SA, MANAGED_LABELS

PR_VALIDATION_SA = "sonic-pr-validation"
BUILD_MODELS_SA = "sonic-build-models"
ROLLOUT_SA = "sonic-rollout"
SCHEDULED_SA = "sonic-scheduled-validation"
SENSOR_SA = "sonic-events-sensor"


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)}


def service_account(name: str, namespace: str, *, token: bool) -> dict[str, Any]:
    """A ServiceAccount; ``token=False`` keeps its token out of every pod that uses it."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace),
        "automountServiceAccountToken": token,
    }


def service_account_token(account: str, namespace: str) -> dict[str, Any]:
    """The long-lived token Secret of ``account``; Kubernetes' token controller fills in its data.

    Argo Workflows mounts the executor's token from the Secret named
    ``<account>.service-account-token`` (argo-workflows util/secrets/secret_name.go; docs
    service-account-secrets.md): since Kubernetes 1.24 nobody creates it unless it is declared.
    No value is written here: the type and annotation ask the control plane to issue one.
    """
    meta = _meta(f"{account}.service-account-token", namespace)
    meta["annotations"] = {"kubernetes.io/service-account.name": account}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "kubernetes.io/service-account-token",
    }


def role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(name, namespace),
        "rules": rules,
    }


def role_binding(name: str, namespace: str, role_name: str, sa: str, sa_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}],
    }


def executor(namespace: str) -> list[dict[str, Any]]:
    """The executor identity every workflow in ``namespace`` uses for its wait/init containers."""
    rules = [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    return [
        service_account(EXECUTOR_SA, namespace, token=True),
        service_account_token(EXECUTOR_SA, namespace),
        role(EXECUTOR_SA, namespace, rules),
        role_binding(EXECUTOR_SA, namespace, EXECUTOR_SA, EXECUTOR_SA, namespace),
    ]


def rollout_argocd_access(argocd_namespace: str, sa_namespace: str) -> list[dict[str, Any]]:
    """Read-only access to Argo CD Applications, in Argo CD's namespace only."""
    rules = [{"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "list", "watch"]}]
    name = "sonic-rollout-read-applications"
    return [
        role(name, argocd_namespace, rules),
        role_binding(name, argocd_namespace, name, ROLLOUT_SA, sa_namespace),
    ]


def sensor_access(namespace: str) -> list[dict[str, Any]]:
    """The Sensor may create Workflows (from the pr-validation template) and nothing else."""
    rules = [{"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]
    return [
        service_account(SENSOR_SA, namespace, token=True),
        role(SENSOR_SA, namespace, rules),
        role_binding(SENSOR_SA, namespace, SENSOR_SA, SENSOR_SA, namespace),
    ]
