"""The rendered workflows, run by the real Argo Workflows controller (v4) on the real API server.

The controller builds every pod itself (service accounts, token volumes, secret mounts) and walks
the DAGs (``depends``, ``when``). No kubelet runs the containers: this test plays the executor's
part of each step. It writes the step's WorkflowTaskResult *as the executor ServiceAccount*
(so RBAC decides whether it may, as it would for argoexec) and then finishes the pod with the exit
code the scenario chooses. Upstream rules exercised here:

- argo-workflows workflow/controller/workflowpod.go setupServiceAccount: with an executor account
  the token comes from the Secret ``<account>.service-account-token`` (util/secrets), which must
  exist since Kubernetes 1.24 (docs/service-account-secrets.md); a template's
  automountServiceAccountToken is copied to the pod only when false;
- kube-apiserver's ServiceAccount admission (plugin/pkg/admission/serviceaccount): a pod gets the
  projected ``kube-api-access-*`` token volume unless the pod or its account turns it off;
- workflow/controller/dag.go and workflow/common/ancestry: enhanced ``depends`` (Skipped is not
  Succeeded) and ``when`` on outputs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config.checked import load_tree
from tests.controlplane.conftest import needs_controller
from tests.support.controlplane import ControlPlane, apply_object, ensure_namespace, site_prerequisites

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "gitops" / "workflows"
ARGO = "/apis/argoproj.io/v1alpha1"
TERMINAL = ("Succeeded", "Failed", "Error")


def apply_file(cp: ControlPlane, path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for ns in {d["metadata"].get("namespace") for d in docs} - {None}:
        ensure_namespace(cp, ns)
    for doc in sorted(docs, key=lambda d: {"Namespace": 0, "ServiceAccount": 1}.get(d["kind"], 2)):
        status, body = apply_object(cp, doc)
        assert status in (200, 201), f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {status} {body}"
    return docs


@dataclass
class Run:
    workflow: dict[str, Any]
    pods: dict[str, dict[str, Any]]  # step (task) name -> the pod as the controller created it

    @property
    def phase(self) -> str:
        return str(self.workflow.get("status", {}).get("phase"))

    def node_phases(self) -> dict[str, str]:
        """Task name -> phase, for every DAG task the controller decided on."""
        out = {}
        # A retried task is a Retry node over Pod nodes "task(0)", "task(1)", ...: the Retry
        # node's phase is the task's, so it is read last and wins.
        order = {"Pod": 0, "ContainerSet": 0, "Skipped": 1, "Retry": 2}
        nodes = self.workflow.get("status", {}).get("nodes", {}).values()
        for node in sorted((n for n in nodes if n.get("type") in order), key=lambda n: order[n["type"]]):
            out[node["displayName"].split("(", 1)[0]] = node["phase"]
        return out


def step_of(pod: Mapping[str, Any]) -> str:
    """The DAG task a pod runs: last part of its node name (``<workflow>.<task>``)."""
    name = pod["metadata"]["annotations"]["workflows.argoproj.io/node-name"]
    return name.rsplit(".", 1)[-1].split("(", 1)[0]  # "checkout(0)": the first try of a retried step


def run_workflow(
    cp: ControlPlane,
    namespace: str,
    spec: dict[str, Any],
    *,
    exit_codes: Mapping[str, int] | None = None,
    outputs: Mapping[str, Mapping[str, str]] | None = None,
    executor: str = "sonic-workflow-executor",
    timeout: float = 120.0,
) -> Run:
    """Submit a Workflow and play each step's executor until the workflow ends."""
    exit_codes = exit_codes or {}
    outputs = outputs or {}
    status, wf = cp.request(
        "POST",
        f"{ARGO}/namespaces/{namespace}/workflows",
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"generateName": "t-"},
            "spec": spec,
        },
    )
    assert status == 201, json.dumps(wf)[:2000]
    name = wf["metadata"]["name"]
    pods: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        _, wf = cp.request("GET", f"{ARGO}/namespaces/{namespace}/workflows/{name}")
        if wf.get("status", {}).get("phase") in TERMINAL:
            return Run(wf, pods)
        _, listed = cp.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods?labelSelector=workflows.argoproj.io/workflow%3D{name}",
        )
        for pod in listed.get("items", []):
            pod_name = pod["metadata"]["name"]
            if pod_name in done or pod.get("status", {}).get("phase") != "Running":
                continue
            step = step_of(pod)
            pods[step] = pod
            code = real_exit_code(pod) if step in REAL_STEPS else exit_codes.get(step, 0)
            finish_step(cp, namespace, name, pod, code, outputs.get(step, {}), executor)
            done.add(pod_name)
        time.sleep(0.3)
    status_ = wf.get("status", {})
    stuck = {
        n["displayName"]: f"{n.get('phase')} {n.get('message', '')}"
        for n in status_.get("nodes", {}).values()
    }
    stuck["taskResultsCompletionStatus"] = str(status_.get("taskResultsCompletionStatus"))
    pytest.fail(
        f"workflow {name} did not finish in {timeout:g}s; unfinished steps: {json.dumps(stuck)[:3000]}"
    )


# Steps whose real command runs here, on the arguments the controller resolved into the pod,
# instead of an exit code the test chooses: they read nothing but their arguments.
REAL_STEPS = frozenset({"verdict"})


def real_exit_code(pod: Mapping[str, Any]) -> int:
    (main,) = [c for c in pod["spec"]["containers"] if c["name"] == "main"]
    assert main["command"][-1] == "sonic", main["command"]  # argoexec emissary -- sonic ARGS
    return CliRunner().invoke(cli, main["args"]).exit_code


def finish_step(
    cp: ControlPlane,
    namespace: str,
    workflow: str,
    pod: dict[str, Any],
    exit_code: int,
    values: Mapping[str, str],
    executor: str,
) -> None:
    """What argoexec's wait container does, then what the kubelet reports."""
    node_id = pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
    params = [{"name": n, "value": v} for n, v in sorted(values.items())]
    result = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTaskResult",
        "metadata": {
            "name": node_id,
            "namespace": namespace,
            "labels": {
                "workflows.argoproj.io/workflow": workflow,
                "workflows.argoproj.io/report-outputs-completed": "true",
            },
        },
        "outputs": {"parameters": params, "exitCode": str(exit_code)},
    }
    status, body = cp.request(
        "POST",
        f"{ARGO}/namespaces/{namespace}/workflowtaskresults",
        result,
        **cp.as_service_account(namespace, executor),
    )
    assert status == 201, f"executor {executor} may not report step {step_of(pod)}: {status} {body}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    statuses = [
        {
            "name": c["name"],
            "image": c["image"],
            "ready": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": exit_code if c["name"] == "main" else 0,
                    "reason": "Completed" if exit_code == 0 or c["name"] != "main" else "Error",
                    "startedAt": now,
                    "finishedAt": now,
                }
            },
        }
        for c in pod["spec"]["containers"]
    ]
    patch = {"status": {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": statuses}}
    status, body = cp.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
        patch,
        content_type="application/merge-patch+json",
    )
    assert status == 200, body


def has_api_token(pod: Mapping[str, Any]) -> bool:
    """The projected token the ServiceAccount admission plugin adds (kube-api-access-*)."""
    return any(v["name"].startswith("kube-api-access-") for v in pod["spec"].get("volumes", []))


def assert_executor_token_ready(cp: ControlPlane, pod: Mapping[str, Any]) -> None:
    """The executor's token volume points at a Secret that exists and the token controller
    filled (type kubernetes.io/service-account-token, data.token set)."""
    ns = pod["metadata"]["namespace"]
    vols = [v for v in pod["spec"].get("volumes", []) if v["name"] == "exec-sa-token"]
    assert vols, f"pod {pod['metadata']['name']} has no executor token volume"
    secret = vols[0]["secret"]["secretName"]
    for _ in range(50):
        status, body = cp.request("GET", f"/api/v1/namespaces/{ns}/secrets/{secret}")
        if status == 200 and body.get("data", {}).get("token"):
            assert body["type"] == "kubernetes.io/service-account-token"
            return
        time.sleep(0.2)
    pytest.fail(f"{ns}/{secret}: the executor token Secret is missing or never filled ({status})")


@pytest.fixture(scope="module")
def pipelines(control_plane: ControlPlane) -> ControlPlane:
    needs_controller(control_plane, "argo-workflows")
    for name in ("common.yaml", "pr-validation.yaml", "rollout.yaml"):
        apply_file(control_plane, WORKFLOWS / name)
    return control_plane


def template_spec(name: str, **params: str) -> dict[str, Any]:
    return {
        "workflowTemplateRef": {"name": name},
        "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]},
    }


PR = {
    "repository": "fastmachinelearning/sonic-gitops",
    "pr-number": "7",
    "head-sha": "a" * 40,
    "base-ref": "main",
    "details-url": "https://example.org/run",
}


def test_pr_validation_of_an_irrelevant_change_still_checks_the_render(pipelines: ControlPlane) -> None:
    run = run_workflow(
        pipelines,
        "sonic-pipelines",
        template_spec("pr-validation", **PR),
        outputs={"checkout": {"relevant": "false", "base-sha": "b" * 40, "deployments": "[]"}},
    )
    phases = run.node_phases()
    assert phases.get("validate") == "Skipped"
    # Issue 11, finding 2: ownership, render and pipeline-render checks run whatever changed.
    for step in ("owners-check", "render-check", "pipelines-render-check", "verify-rendered", "verdict"):
        assert phases.get(step) == "Succeeded", (step, phases)
    assert run.phase == "Succeeded"
    for pod in run.pods.values():
        assert_executor_token_ready(pipelines, pod)
        assert not has_api_token(pod), f"{step_of(pod)} got a Kubernetes API token it does not need"


def test_pr_validation_failure_still_runs_the_render_check_and_fails(pipelines: ControlPlane) -> None:
    run = run_workflow(
        pipelines,
        "sonic-pipelines",
        template_spec("pr-validation", **PR),
        exit_codes={"validate": 1},
        outputs={"checkout": {"relevant": "true", "base-sha": "b" * 40, "deployments": "[]"}},
    )
    phases = run.node_phases()
    assert phases.get("validate") == "Failed"
    assert "build-models" not in phases or phases["build-models"] == "Omitted"
    assert phases.get("render-check") == "Succeeded", phases
    assert run.phase == "Failed"


def test_pr_validation_mixing_owners_fails_and_still_runs_every_check(pipelines: ControlPlane) -> None:
    run = run_workflow(
        pipelines,
        "sonic-pipelines",
        template_spec("pr-validation", **PR),
        exit_codes={"owners-check": 1},
        outputs={"checkout": {"relevant": "true", "base-sha": "b" * 40, "deployments": "[]"}},
    )
    phases = run.node_phases()
    assert phases.get("owners-check") == "Failed", phases
    for step in ("validate", "render-check", "pipelines-render-check", "verify-rendered"):
        assert phases.get(step) == "Succeeded", (step, phases)
    # The real `sonic pipelines verdict` ran on the phases the controller passed it: without it
    # the last check's success would make the run (and the commit status) green.
    assert phases.get("verdict") == "Failed", phases
    assert run.phase == "Failed"


@pytest.mark.parametrize("failing", ["render-check", "pipelines-render-check"])
def test_pr_validation_fails_when_a_middle_check_fails_and_the_last_passes(
    pipelines: ControlPlane, failing: str
) -> None:
    """Argo takes a DAG's phase from its last tasks (dag.go, assessDAGPhase): the checks after the
    failed one succeed, so only the verdict keeps the run from being Succeeded."""
    run = run_workflow(
        pipelines,
        "sonic-pipelines",
        template_spec("pr-validation", **PR),
        exit_codes={failing: 1},
        outputs={"checkout": {"relevant": "false", "base-sha": "b" * 40, "deployments": "[]"}},
    )
    phases = run.node_phases()
    assert phases.get(failing) == "Failed", phases
    assert phases.get("verify-rendered") == "Succeeded", phases
    assert phases.get("verdict") == "Failed", phases
    assert run.phase == "Failed"


ROLLOUT = {"site": "geddes", "deployment": "cms/particlenet", "revision": "c" * 40}


def rollout_outputs(**overrides: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every output each rollout step declares (a placeholder value), with ``overrides``."""
    out: dict[str, dict[str, str]] = {}
    template = next(
        d
        for d in yaml.safe_load_all((WORKFLOWS / "rollout.yaml").read_text())
        if d and d["kind"] == "WorkflowTemplate"
    )
    for tmpl in template["spec"]["templates"]:
        names = [p["name"] for p in tmpl.get("outputs", {}).get("parameters", [])]
        out[tmpl["name"]] = {n: "placeholder" for n in names}
    for step, values in overrides.items():
        out.setdefault(step, {}).update(values)
    return out


def test_rollout_wait_gets_a_token_and_a_failed_wait_reverts(pipelines: ControlPlane) -> None:
    run = run_workflow(
        pipelines,
        "sonic-pipelines",
        template_spec("rollout", **ROLLOUT),
        # `sonic rollout revert` exits 1 after reverting: the rollout failed (pipelines/cli/rollout.py).
        exit_codes={"wait": 1, "revert": 1},
        outputs=rollout_outputs(target={"argocd-remote": "false"}, commit={"changed": "true"}),
    )
    phases = run.node_phases()
    assert phases.get("wait") == "Failed", (run.phase, run.workflow["status"].get("message"), phases)
    assert phases.get("revert") == "Failed", phases  # it ran (and reported the failed rollout)
    assert "verify" not in phases or phases["verify"] == "Omitted", phases
    assert run.phase == "Failed"
    assert has_api_token(run.pods["wait"]), "the wait step must reach the Kubernetes API"
    for step, pod in run.pods.items():
        assert_executor_token_ready(pipelines, pod)
        if step != "wait":
            assert not has_api_token(pod), f"{step} got a Kubernetes API token it does not need"


def test_rollout_that_changed_nothing_is_not_reverted(pipelines: ControlPlane) -> None:
    run = run_workflow(
        pipelines,
        "sonic-pipelines",
        template_spec("rollout", **ROLLOUT),
        exit_codes={"wait": 1},
        outputs=rollout_outputs(target={"argocd-remote": "false"}, commit={"changed": "false"}),
    )
    assert run.node_phases().get("revert") in (None, "Skipped", "Omitted")


def test_model_build_runs_in_an_experiment_namespace(pipelines: ControlPlane) -> None:
    path = next(iter(sorted(WORKFLOWS.glob("build-model-repository-*.yaml"))))
    site = load_tree(ROOT).sites[path.stem.removeprefix("build-model-repository-")]
    for prerequisite in site_prerequisites(site):  # the snapshot claim the build writes into
        ensure_namespace(pipelines, prerequisite["metadata"].get("namespace") or "default")
        apply_object(pipelines, prerequisite, field_manager="site-admin")
    docs = apply_file(pipelines, path)
    template = next(d for d in docs if d["kind"] == "WorkflowTemplate")
    ns = template["metadata"]["namespace"]
    run = run_workflow(
        pipelines,
        ns,
        template_spec(
            "build-model-repository",
            experiment="cms",
            deployment="particlenet",
            repository="fastmachinelearning/sonic-gitops",
            revision="e" * 40,
        ),
    )
    assert run.phase == "Succeeded", run.node_phases()
    for pod in run.pods.values():
        assert pod["spec"]["serviceAccountName"] == template["spec"]["serviceAccountName"]
        assert_executor_token_ready(pipelines, pod)


def test_scheduled_checks_run(pipelines: ControlPlane) -> None:
    path = WORKFLOWS / "scheduled-validation-nautilus.yaml"
    cron = next(d for d in apply_file(pipelines, path) if d["kind"] == "CronWorkflow")
    run = run_workflow(pipelines, "sonic-pipelines", cron["spec"]["workflowSpec"])
    assert run.phase == "Succeeded", run.node_phases()
    assert run.pods, "no check pod was created"
    for pod in run.pods.values():
        assert_executor_token_ready(pipelines, pod)
        assert not has_api_token(pod)
