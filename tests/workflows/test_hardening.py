"""Every pipeline step is bounded, retried where the network is involved, non-root, and sees
only the Secrets and Kubernetes permissions it needs.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.workflows import upstream
from tests.workflows.support import (
    WORKFLOW_CRDS,
    containers,
    objects,
    of_kind,
    settings,
    tree,
    workflow_spec,
)

# Subcommands that reach the network (GitHub, git remotes, artifact URLs, deployments, Pushgateway).
NETWORK = {
    ("github", "checkout"), ("github", "status"), ("github", "comment"), ("build-models",), ("check",),
    ("rollout", "commit"), ("rollout", "revert"), ("rollout", "verify"), ("pushgateway", "check"),
}  # fmt: skip


def words(c: dict[str, Any]) -> tuple[str, ...]:
    args = c["args"]
    return tuple(args[:1]) if args[0] in ("build-models", "check", "render", "validate") else tuple(args[:2])


@pytest.mark.parametrize(
    ("ident", "template", "c"), list(containers()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_step_is_bounded_and_hardened(ident: str, template: dict[str, Any], c: dict[str, Any]) -> None:
    assert c["command"] == ["sonic"], ident
    res = c["resources"]
    assert set(res["requests"]) == {"cpu", "memory"} and set(res["limits"]) == {"cpu", "memory"}, ident
    sc = c["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }, ident
    assert 0 < template["activeDeadlineSeconds"] <= 3 * 3600, ident
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], (
        ident
    )  # read-only root needs a scratch dir
    if words(c) in NETWORK:
        retry = template.get("retryStrategy")
        assert retry and retry["limit"] >= 2 and retry["backoff"]["duration"], (
            f"{ident}: network step without retries"
        )
        # A real "no" (exit 1: a failed check, a 4xx) is never retried; outages (exit 2) and lost pods are.
        assert retry["expression"] == 'lastRetry.status == "Error" || lastRetry.exitCode == "2"', ident


@pytest.mark.parametrize(
    "obj",
    [o for _, o in objects() if o["kind"] in WORKFLOW_CRDS],
    ids=lambda o: f"{o['metadata']['namespace']}/{o['metadata']['name']}",
)
def test_every_workflow_cleans_up_and_runs_as_its_own_non_root_identity(obj: dict[str, Any]) -> None:
    spec = workflow_spec(obj)
    assert spec["podGC"]["strategy"] == "OnPodSuccess"
    assert spec["ttlStrategy"]["secondsAfterCompletion"] > 0
    assert 0 < spec["activeDeadlineSeconds"] <= 3 * 3600
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == settings().run_as_user != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["serviceAccountName"].startswith("sonic-")
    assert spec["executor"] == {"serviceAccountName": "sonic-workflow-executor"}
    # No step gets a Kubernetes token unless it must (only the rollout's wait does).
    assert spec["automountServiceAccountToken"] is False
    if spec.get("volumeClaimTemplates"):
        assert spec["volumeClaimGC"] == {"strategy": "OnWorkflowCompletion"}


def accounts() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in of_kind("ServiceAccount")}


def steps_with_a_token() -> list[str]:
    """Steps whose pod Kubernetes mounts the ServiceAccount token into, as the controllers decide.

    Argo's setupServiceAccount (workflowpod.go) sets the pod field, Kubernetes' ServiceAccount
    admission (shouldAutomount) falls back to the account: see tests/workflows/upstream.py.
    """
    out = []
    for _, obj in objects():
        if obj["kind"] not in WORKFLOW_CRDS:
            continue
        spec = workflow_spec(obj)
        namespace = obj["metadata"]["namespace"]
        for t in spec["templates"]:
            if "container" not in t and "containerSet" not in t:
                continue
            account = accounts()[(namespace, upstream.pod_service_account(t, spec))]
            if upstream.kubernetes_mounts_token(upstream.pod_automount(t, spec), account):
                out.append(f"{namespace}/{obj['metadata']['name']}/{t['name']}")
    return out


def test_only_the_rollout_wait_step_gets_a_kubernetes_token() -> None:
    # Issue 10.2: the template said true, but Argo copies a template's value to the pod only
    # when it is false (argo-workflows workflow/controller/workflowpod.go, setupServiceAccount),
    # and the account said false, so Kubernetes (plugin/pkg/admission/serviceaccount,
    # shouldAutomount) mounted nothing and `rollout wait` found no in-cluster configuration.
    assert steps_with_a_token() == ["sonic-pipelines/rollout/wait"]


def test_the_token_rule_can_tell_the_difference() -> None:
    """Negative controls: the old objects give the wait step no token; a missing false gives all."""
    wait = {"automountServiceAccountToken": True}
    spec = {"automountServiceAccountToken": False, "serviceAccountName": "sonic-rollout"}
    assert upstream.pod_automount(wait, spec) is None  # true is never copied to the pod
    assert not upstream.kubernetes_mounts_token(None, {"automountServiceAccountToken": False})
    assert upstream.kubernetes_mounts_token(None, {"automountServiceAccountToken": True})
    assert upstream.pod_automount({}, spec) is False
    assert upstream.kubernetes_mounts_token(upstream.pod_automount({}, {}), {})  # nothing said: a token


def test_every_executor_account_has_the_token_secret_argo_mounts() -> None:
    # Issue 10.1: with executor.serviceAccountName set, Argo mounts the executor's token from the
    # Secret util/secrets/secret_name.go names (<account>.service-account-token unless the
    # account lists one); since Kubernetes 1.24 that Secret exists only when declared
    # (argo-workflows docs/service-account-secrets.md), else no workflow pod can start.
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in of_kind("Secret")}
    checked = set()
    for _, obj in objects():
        if obj["kind"] not in WORKFLOW_CRDS:
            continue
        namespace = obj["metadata"]["namespace"]
        account = accounts()[(namespace, workflow_spec(obj)["executor"]["serviceAccountName"])]
        name = upstream.executor_token_secret_name(account)
        secret = secrets.get((namespace, name))
        assert secret is not None, f"{namespace}/{obj['metadata']['name']}: no Secret {name}"
        assert secret["type"] == "kubernetes.io/service-account-token"
        assert secret["metadata"]["annotations"] == {
            "kubernetes.io/service-account.name": account["metadata"]["name"]
        }
        assert "data" not in secret and "stringData" not in secret  # the token controller fills it
        checked.add(namespace)
    namespaces = {settings().namespace} | {p.namespace for p in tree().placements_at()
                                           if tree().sites[p.site].storage.snapshots}  # fmt: skip
    assert checked == namespaces
    # The rule itself: an account that lists a Secret, or names one, is read that way.
    assert upstream.executor_token_secret_name({"metadata": {"name": "x"}, "secrets": [{"name": "y"}]}) == "y"
    assert upstream.executor_token_secret_name({"metadata": {"name": "x"}}) == "x.service-account-token"


def bindings() -> dict[str, list[dict[str, Any]]]:
    """ServiceAccount name -> the Roles bound to it (with their namespace)."""
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in of_kind("Role")}
    out: dict[str, list[dict[str, Any]]] = {}
    for rb in of_kind("RoleBinding"):
        assert rb["roleRef"]["kind"] == "Role"  # never a ClusterRole
        for subject in rb["subjects"]:
            out.setdefault(subject["name"], []).append(
                roles[(rb["metadata"]["namespace"], rb["roleRef"]["name"])]
            )
    return out


def test_least_privilege_rbac() -> None:
    granted = bindings()
    ns = settings().namespace
    assert "sonic-pr-validation" not in granted  # needs no Kubernetes API at all
    assert "sonic-scheduled-validation" not in granted and "sonic-build-models" not in granted
    argocd_namespaces = {s.argocd.namespace for s in tree().sites.values()}
    (rollout_role,) = granted["sonic-rollout"]
    assert rollout_role["metadata"]["namespace"] in argocd_namespaces
    assert rollout_role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "list", "watch"]}
    ]
    (sensor_role,) = granted["sonic-events-sensor"]
    assert sensor_role["metadata"]["namespace"] == ns
    assert sensor_role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}
    ]
    for role in granted["sonic-workflow-executor"]:
        assert role["rules"] == [
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
        ]
    for role in of_kind("Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert "secrets" not in rule["resources"]


def test_service_accounts_hold_no_token_unless_a_controller_needs_one() -> None:
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["automountServiceAccountToken"]
        for o in of_kind("ServiceAccount")
    }
    # sonic-rollout allows one because its wait step must get one (see above); the workflow spec
    # turns it off for every other step.
    for (namespace, name), token in accounts.items():
        expected = name in ("sonic-workflow-executor", "sonic-events-sensor", "sonic-rollout")
        assert token is expected, (namespace, name)
    # Every account a workflow or the Sensor names exists in its namespace.
    for _, obj in objects():
        if obj["kind"] in WORKFLOW_CRDS:
            spec = workflow_spec(obj)
            for sa in (spec["serviceAccountName"], spec["executor"]["serviceAccountName"]):
                assert (obj["metadata"]["namespace"], sa) in accounts, (obj["metadata"]["name"], sa)
    (sensor,) = of_kind("Sensor")
    assert (sensor["metadata"]["namespace"], sensor["spec"]["template"]["serviceAccountName"]) in accounts


def test_secrets_are_only_referenced() -> None:
    s = settings()
    for ident, _, c in containers():
        for env in c.get("env", []):
            assert "value" not in env or env["name"] == "HOME", f"{ident}: {env}"
    secret_names = set()
    for _, obj in objects():
        if obj["kind"] in WORKFLOW_CRDS:
            for v in workflow_spec(obj).get("volumes", []):
                if "secret" in v:
                    assert v["secret"]["defaultMode"] == 0o440
                    secret_names.add(v["secret"]["secretName"])
    assert secret_names == {
        s.github_token.name,
        s.github_read_token.name,
        s.push_token.name,
        s.check_client,
        s.prometheus_token.name,
    }
    text = yaml.safe_dump([o for _, o in objects()])
    assert "ghp_" not in text and "BEGIN" not in text
    # The only Secret objects rendered are token requests the control plane fills in.
    for secret in of_kind("Secret"):
        assert secret["type"] == "kubernetes.io/service-account-token" and set(secret) == {
            "apiVersion", "kind", "metadata", "type"
        }  # fmt: skip


def test_jwt_checks_get_a_fresh_token_not_a_stored_one() -> None:
    # Issue 10.10: a stored JWT expires between scheduled runs; every check of a JWT deployment
    # gets OAuth2 client credentials (a whole Secret: scope and audience are optional keys)
    # and asks for a token when it runs (RFC 6749 section 4.4, see tests/checks/test_oauth2.py).
    s = settings()
    jwt_checks = 0
    for ident, _, c in containers():
        args = c["args"]
        assert "--token-file" not in args or args[:2] in (["github", "checkout"], ["github", "status"],
               ["github", "comment"], ["rollout", "commit"], ["rollout", "revert"], ["rollout", "wait"]), ident  # fmt: skip
        if "--client-credentials" in args:
            assert args[args.index("--client-credentials") + 1] == "/var/run/secrets/sonic/check-client", (
                ident
            )
            jwt_checks += 1
    assert jwt_checks >= 2  # the rollout's verify and the scheduled check of the JWT deployment
    volumes = [v for _, o in objects() if o["kind"] in WORKFLOW_CRDS for v in workflow_spec(o).get("volumes", [])
               if v["name"] == "check-client"]  # fmt: skip
    assert volumes and all(
        v["secret"]["secretName"] == s.check_client and "items" not in v["secret"] for v in volumes
    )


def test_pr_validation_mounts_the_token_only_where_github_is_called() -> None:
    prefix = "sonic-pipelines/pr-validation/"
    token_steps = sorted(ident.removeprefix(prefix) for ident, _, c in containers()
                         if ident.startswith(prefix)
                         and any(m["name"] == "github-token" for m in c["volumeMounts"]))  # fmt: skip
    # build-models-dry-run/checkout: each model build clones the pull request itself; its
    # `main` container (which runs the pull request's artifact URLs) never sees the token.
    assert token_steps == [
        "build-models-dry-run/checkout", "checkout", "report-comment", "report-pending", "report-status"
    ]  # fmt: skip


def referenced_secrets(node: Any) -> set[str]:
    """Every Secret an object references: volumes, projections, env and envFrom."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "secret" and isinstance(value, dict):
                found.add(value.get("secretName") or value.get("name") or "")
            elif key in ("secretKeyRef", "secretRef") and isinstance(value, dict):
                found.add(value.get("name", ""))
            found |= referenced_secrets(value)
    elif isinstance(node, list):
        for item in node:
            found |= referenced_secrets(item)
    return found


def experiment_namespace_objects(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    pipelines = settings().namespace
    return [
        (f, o) for f, o in docs
        if o["kind"] != "Namespace" and o["metadata"].get("namespace", pipelines) != pipelines
    ]  # fmt: skip


def test_experiment_namespaces_never_see_the_token_that_writes_statuses_and_comments() -> None:
    # Issue 11, finding 1: a pod in an experiment namespace runs what a (fork's) pull request
    # wrote; the token mounted there may read the repository, nothing more.
    write, read = settings().github_token.name, settings().github_read_token.name
    assert write != read
    docs = list(objects())
    inside = experiment_namespace_objects(docs)
    assert {f for f, _ in inside} >= {"build-model-repository-uchicago.yaml"}  # the check looks somewhere
    for f, o in inside:
        assert write not in referenced_secrets(o), f"{f}: {o['kind']} {o['metadata']['name']} mounts {write}"
        assert write not in yaml.safe_dump(o), f"{f}: {o['metadata']['name']} names {write}"
    builds = [o for f, o in inside if o["kind"] == "WorkflowTemplate"]
    assert builds and all(read in referenced_secrets(o) for o in builds)
    # The status and comment steps still get the write token, in the pipelines namespace only.
    (pr,) = [o for f, o in docs if f == "pr-validation.yaml" and o["kind"] == "WorkflowTemplate"]
    assert pr["metadata"]["namespace"] == settings().namespace and write in referenced_secrets(pr)


def test_the_token_check_fails_on_the_old_build_template() -> None:
    # Negative control: the build template as it was (the write token in the checkout) is caught.
    from dataclasses import replace

    from pipelines.workflows import build_model_repository

    old = replace(settings(), github_read_token=settings().github_token)
    site = tree().sites["uchicago"]
    docs = [("old.yaml", o) for o in build_model_repository.objects(old, tree(), site)]
    inside = experiment_namespace_objects(docs)
    assert any(settings().github_token.name in referenced_secrets(o) for _, o in inside)


def test_the_read_token_secret_is_a_repository_setting(tmp_path: Any) -> None:
    from pathlib import Path

    from pipelines.config.repository import load_repository
    from pipelines.workflows.settings import from_repository
    from tests.conftest import FIXTURE

    root = Path(tmp_path)
    (root / "gitops").mkdir()
    text = "".join(
        line for line in (FIXTURE / "gitops" / "repository.yaml").read_text().splitlines(keepends=True)
        if not line.startswith("githubReadToken:")
    )  # fmt: skip
    (root / "gitops" / "repository.yaml").write_text(text + "githubReadToken: cms-readonly\n")
    assert from_repository(load_repository(root)).github_read_token.name == "cms-readonly"
    (root / "gitops" / "repository.yaml").write_text(text + "githubReadToken: Not_A_Name\n")
    with pytest.raises(Exception, match="githubReadToken"):
        load_repository(root)
