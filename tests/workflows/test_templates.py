"""What each rendered pipeline does: the steps, their order and the wiring between them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from pipelines.config.names import envoy_service_host
from tests.workflows import upstream
from tests.workflows.support import main_container, of_kind, settings, tree, workflow_spec


def template(name: str, namespace: str | None = None) -> dict[str, Any]:
    (obj,) = [
        o for o in of_kind("WorkflowTemplate")
        if o["metadata"]["name"] == name and (namespace is None or o["metadata"]["namespace"] == namespace)
    ]  # fmt: skip
    return obj


def dag(obj: dict[str, Any], name: str = "main") -> dict[str, dict[str, Any]]:
    (t,) = [t for t in workflow_spec(obj)["templates"] if t["name"] == name]
    return {task["name"]: task for task in t["dag"]["tasks"]}


def step(obj: dict[str, Any], name: str) -> dict[str, Any]:
    (t,) = [t for t in workflow_spec(obj)["templates"] if t["name"] == name]
    return t


def args(obj: dict[str, Any], name: str) -> list[str]:
    """The arguments of the step's own command (a container set's ``main``)."""
    return list(main_container(step(obj, name))["args"])


def test_pr_validation_flow() -> None:
    wt = template("pr-validation")
    tasks = dag(wt)
    assert list(tasks) == [
        "report-pending",
        "checkout",
        "owners-check",
        "validate",
        "build-models",
        "render-check",
        "pipelines-render-check",
        "verify-rendered",
        "verdict",
    ]
    assert tasks["owners-check"]["depends"] == "checkout.Succeeded" and "when" not in tasks["owners-check"]
    # The verdict sees every gated check's phase (its failure fails the run; tests/controlplane).
    assert tasks["verdict"]["depends"] == "verify-rendered.Succeeded || verify-rendered.Failed"
    gated = ("owners-check", "validate", "render-check", "pipelines-render-check", "verify-rendered")
    assert {a["name"]: a["value"] for a in tasks["verdict"]["arguments"]["parameters"]} == {
        c: f"{{{{tasks.{c}.status}}}}" for c in gated
    }
    assert args(wt, "owners-check") == ["owners", "check", "--against", "{{inputs.parameters.base-sha}}"]
    assert args(wt, "pipelines-render-check") == ["pipelines", "render", "--check"]
    assert tasks["validate"]["when"] == "{{tasks.checkout.outputs.parameters.relevant}} == true"
    assert tasks["build-models"]["withParam"] == "{{tasks.checkout.outputs.parameters.deployments}}"
    assert args(wt, "build-models-dry-run") == [
        "build-models",
        "{{inputs.parameters.deployment}}",
        "--dry-run",
    ]
    assert args(wt, "validate") == [
        "validate",
        "--changed-against",
        "{{inputs.parameters.base-sha}}",
    ]
    assert args(wt, "render-check") == ["render", "--check"]
    # Reporting happens whatever failed: in the exit handler.
    assert wt["spec"]["onExit"] == "report" and set(dag(wt, "report")) == {"status", "comment"}
    comment = args(wt, "report-comment")
    assert "{{workflow.failures}}" in comment and "--skip-if-irrelevant" in comment


def test_render_check_and_verify_run_when_validate_is_skipped_or_fails() -> None:
    # Issue 10.11: with `depends: validate.Succeeded`, a pull request touching nothing under
    # experiments/ or gitops/sites/ (validate Skipped by its `when`) skipped the render check:
    # in Argo's enhanced depends, Skipped is not Succeeded (argo-workflows
    # workflow/controller/dag.go, evaluateDependsLogic; results in workflow/common/ancestry.go).
    tasks = dag(template("pr-validation"))
    always = ("owners-check", "render-check", "pipelines-render-check", "verify-rendered")
    irrelevant = upstream.run_dag(tasks, {}, when={"validate": False})
    assert irrelevant["validate"] == "Skipped" and irrelevant["build-models"] == "Omitted"
    assert {irrelevant[t] for t in always} == {"Succeeded"}
    invalid = upstream.run_dag(tasks, {"validate": "Failed", "render-check": "Failed"})
    assert invalid["build-models"] == "Omitted"
    assert invalid["render-check"] == "Failed" and invalid["verify-rendered"] == "Succeeded"
    assert invalid["pipelines-render-check"] == "Succeeded"
    # Issue 11, finding 2: a failed check never hides the ones after it.
    everything_fails = upstream.run_dag(
        tasks,
        {t: "Failed" for t in ("owners-check", "render-check", "pipelines-render-check")},
        when={"validate": False},
    )
    assert everything_fails["verify-rendered"] == "Succeeded"
    assert upstream.run_dag(tasks, {"owners-check": "Failed"})["validate"] == "Succeeded"
    assert upstream.run_dag(tasks, {})["build-models"] == "Succeeded"
    no_checkout = upstream.run_dag(tasks, {"checkout": "Failed"})
    assert {no_checkout[t] for t in ("validate", *always)} == {"Omitted"}
    # Negative control: the old wiring, run through the same rule, loses the render check.
    old = {**tasks, "render-check": {**tasks["render-check"], "depends": "validate.Succeeded"}}
    assert upstream.run_dag(old, {}, when={"validate": False})["render-check"] == "Omitted"


def test_the_depends_rule_reads_argo_expressions() -> None:
    phases = {"a": "Succeeded", "b-c": "Skipped", "d": "Failed", "e": "Error"}
    assert upstream.depends_holds("a && b-c", phases)  # a bare name: Succeeded, Skipped or Daemoned
    assert not upstream.depends_holds("b-c.Succeeded", phases)
    assert upstream.depends_holds("(d.Failed || e.Errored) && !a.Failed", phases)
    with pytest.raises(ValueError, match="not a task result"):
        upstream.depends_holds("a.Success", phases)


def test_sensor_submits_pr_validation_with_the_event_fields() -> None:
    (sensor,) = of_kind("Sensor")
    (es,) = of_kind("EventSource")
    dep = sensor["spec"]["dependencies"][0]
    assert dep["eventSourceName"] == es["metadata"]["name"] and dep["eventName"] in es["spec"]["github"]
    filters = {f["path"]: f["value"] for f in dep["filters"]["data"]}
    assert filters == {
        "headers.X-Github-Event.0": ["^pull_request$"],
        "body.action": ["^opened$", "^synchronize$", "^reopened$"],
        "body.repository.full_name": [f"^{settings().repository}$"],
    }
    k8s = sensor["spec"]["triggers"][0]["template"]["k8s"]
    workflow = yaml.safe_load(k8s["source"]["inline"])
    assert workflow["kind"] == "Workflow" and workflow["spec"]["workflowTemplateRef"] == {
        "name": "pr-validation"
    }
    names = [p["name"] for p in workflow["spec"]["arguments"]["parameters"]]
    filled = {names[int(p["dest"].split(".")[3])]: p["src"]["dataKey"] for p in k8s["parameters"]}
    assert filled == {
        "repository": "body.repository.full_name",
        "pr-number": "body.pull_request.number",
        "head-sha": "body.pull_request.head.sha",
        "base-ref": "body.pull_request.base.ref",
    }
    declared = {p["name"] for p in template("pr-validation")["spec"]["arguments"]["parameters"]}
    assert set(names) <= declared
    hook = es["spec"]["github"][dep["eventName"]]
    assert (
        hook["webhookSecret"] == {"name": "sonic-github-webhook", "key": "secret"} and "apiToken" not in hook
    )


def delivery(event: str, action: str, repository: str) -> dict[str, Any]:
    """What the GitHub EventSource puts on the bus for one webhook delivery.

    argo-events pkg/eventsources/events/event-data.go, GithubEventData: ``headers`` is Go's
    http.Header (canonical names, a list of values each), ``body`` the payload as sent.
    """
    return {
        "headers": {"X-Github-Event": [event], "Content-Type": ["application/json"]},
        "body": {
            "action": action,
            "repository": {"full_name": repository},
            "pull_request": {"number": 7, "head": {"sha": "a" * 40}, "base": {"ref": "main"}},
        },
    }


def test_sensor_filters_accept_exactly_the_declared_events() -> None:
    # Issue 10.14: argo-events tries each string filter value with Go's unanchored regexp.Match
    # (pkg/sensors/dependencies/filter.go, filterData), so unanchored values also let through
    # pull_request_review deliveries and repositories whose name merely contains ours.
    (sensor,) = of_kind("Sensor")
    filters = sensor["spec"]["dependencies"][0]["filters"]["data"]
    repo = settings().repository
    for action in ("opened", "synchronize", "reopened"):
        assert upstream.data_filter_passes(filters, delivery("pull_request", action, repo)), action
    for rejected in (
        delivery("pull_request_review", "opened", repo),
        delivery("pull_request_review_comment", "opened", repo),
        delivery("pull_request", "reopened_by_bot", repo),
        delivery("pull_request", "closed", repo),
        delivery("pull_request", "opened", f"{repo}-fork"),
        delivery("pull_request", "opened", f"evil/{repo}"),
    ):
        assert not upstream.data_filter_passes(filters, rejected), rejected
    # Negative controls: the previous, unanchored filters let the first of those through, and an
    # anchored value on the whole header list never matches (gjson gives its JSON text).
    old = [
        {"path": "headers.X-Github-Event", "type": "string", "value": ["pull_request"]},
        {"path": "body.action", "type": "string", "value": ["opened", "synchronize", "reopened"]},
        {"path": "body.repository.full_name", "type": "string", "value": [repo]},
    ]
    assert upstream.data_filter_passes(old, delivery("pull_request_review", "opened", repo))
    assert upstream.data_filter_passes(old, delivery("pull_request", "opened", f"{repo}-fork"))
    whole_list = [{"path": "headers.X-Github-Event", "type": "string", "value": ["^pull_request$"]}]
    assert not upstream.data_filter_passes(whole_list, delivery("pull_request", "opened", repo))


def task_arguments(task: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in task.get("arguments", {}).get("parameters", [])}


def test_rollout_flow_reverts_only_what_it_committed() -> None:
    wt = template("rollout")
    tasks = dag(wt)
    assert [(n, t.get("depends")) for n, t in tasks.items()] == [
        ("checkout", None),
        ("render", "checkout.Succeeded"),
        ("target", "render.Succeeded"),
        ("commit", "target.Succeeded"),
        ("wait", "commit.Succeeded"),
        ("wait-remote", "commit.Succeeded"),
        ("verify", "wait.Succeeded || wait-remote.Succeeded"),
        ("revert", "(wait.Failed || wait.Errored || wait-remote.Failed || wait-remote.Errored"
                   " || verify.Failed || verify.Errored)"),
    ]  # fmt: skip
    assert tasks["revert"]["when"] == "{{tasks.commit.outputs.parameters.changed}} == true"
    # Only commits on the base branch roll out; the branch is fixed in the template, not a parameter.
    checkout = args(wt, "checkout")
    assert checkout[checkout.index("--on-branch") + 1] == settings().base_branch
    assert checkout[checkout.index("--repository") + 1] == settings().repository
    assert "repository" not in {p["name"] for p in wt["spec"]["arguments"]["parameters"]}
    # Templates read inputs; the DAG task hands them the other tasks' outputs (Argo resolves
    # {{tasks.*}} only in a task's arguments: workflow/validate/validate.go).
    for name in ("wait", "wait-remote"):
        wait = args(wt, name)
        assert wait[wait.index("--revision") + 1] == "{{inputs.parameters.commit}}"
        assert wait[wait.index("--checkout") + 1] == "/work/gitops"
        assert task_arguments(tasks[name])["commit"] == "{{tasks.commit.outputs.parameters.commit}}"
    revert = args(wt, "revert")
    assert revert[revert.index("--commit") + 1] == "{{inputs.parameters.commit}}"
    assert task_arguments(tasks["revert"])["commit"] == "{{tasks.commit.outputs.parameters.commit}}"
    for t in wt["spec"]["templates"]:
        assert "{{tasks." not in json.dumps(t.get("container", {})), (
            f"{t['name']} reads another task's output"
        )
    assert wt["spec"]["synchronization"] == {"mutexes": [{"name": "rollout-{{workflow.parameters.site}}"}]}
    branch = {p["name"]: p.get("value") for p in wt["spec"]["arguments"]["parameters"]}["gitops-branch"]
    assert branch == settings().gitops_branch


def test_rollout_waits_where_the_sites_argocd_runs() -> None:
    # Issue 10.5: with a central Argo CD (a site's rollout.argocdKubeconfig) the Applications are
    # read through that cluster's kubeconfig (wait-remote), else in this cluster with the pod's
    # token (wait). Exactly one runs: the other's `when` is false and it is Skipped; verify must
    # follow either (Skipped is not Succeeded: argo-workflows workflow/controller/dag.go).
    wt = template("rollout")
    tasks = dag(wt)
    remote = "{{tasks.target.outputs.parameters.argocd-remote}}"
    assert (
        tasks["wait"]["when"] == f"{remote} == false" and tasks["wait-remote"]["when"] == f"{remote} == true"
    )
    in_cluster = upstream.run_dag(tasks, {}, when={"wait-remote": False})
    assert in_cluster["wait"] == "Succeeded" and in_cluster["verify"] == "Succeeded"
    assert in_cluster["revert"] == "Omitted"
    central = upstream.run_dag(tasks, {}, when={"wait": False})
    assert central["wait-remote"] == "Succeeded" and central["verify"] == "Succeeded"
    failed = upstream.run_dag(tasks, {"wait-remote": "Failed"}, when={"wait": False})
    assert failed["verify"] == "Omitted" and failed["revert"] == "Succeeded"
    unhealthy = upstream.run_dag(tasks, {"verify": "Failed"}, when={"wait-remote": False})
    assert unhealthy["revert"] == "Succeeded"
    # Negative control: verify wired to `wait` alone never runs behind a central Argo CD.
    old = {**tasks, "verify": {**tasks["verify"], "depends": "wait.Succeeded"}}
    assert upstream.run_dag(old, {}, when={"wait": False})["verify"] == "Omitted"

    # wait-remote reads the kubeconfig named by target from the Secrets sites name, and gets no
    # token of this cluster; wait gets the token (tests/workflows/test_hardening.py).
    remote_step = step(wt, "wait-remote")
    a = main_container(remote_step)["args"]
    assert a[a.index("--kubeconfig") + 1] == "{{inputs.parameters.argocd-kubeconfig}}"
    kubeconfig_arg = task_arguments(tasks["wait-remote"])["argocd-kubeconfig"]
    assert kubeconfig_arg == "{{tasks.target.outputs.parameters.argocd-kubeconfig}}"
    assert "automountServiceAccountToken" not in remote_step
    mount = next(m for m in main_container(remote_step)["volumeMounts"] if m["name"] == "argocd-kubeconfig")
    assert mount == {
        "name": "argocd-kubeconfig",
        "mountPath": "/var/run/secrets/sonic/argocd-kubeconfig",
        "readOnly": True,
    }
    (volume,) = [v for v in wt["spec"]["volumes"] if v["name"] == "argocd-kubeconfig"]
    central_sites = [s for s in tree().sites.values() if s.rollout.argocd_kubeconfig is not None]
    assert central_sites  # the example tree has one (anvil)
    for s in central_sites:
        ref = s.rollout.argocd_kubeconfig
        assert ref is not None
        assert {"secret": {"name": ref.name, "items": [{"key": ref.key, "path": f"{ref.name}/{ref.key}"}],
                           "optional": True}} in volume["projected"]["sources"]  # fmt: skip
    assert volume["projected"]["defaultMode"] == 0o440


def test_build_model_repository_per_namespace_on_the_sites_claim() -> None:
    t = tree()
    for site in t.sites.values():
        namespaces = sorted({p.namespace for p in t.placements_at(site.name)})
        rendered = [o for o in of_kind("WorkflowTemplate") if o["metadata"]["name"] == "build-model-repository"
                    and o["metadata"]["annotations"]["sonic.fastml.org/site"] == site.name]  # fmt: skip
        assert sorted(o["metadata"]["namespace"] for o in rendered) == namespaces
        for wt in rendered:
            (claim,) = [v for v in wt["spec"]["volumes"] if v["name"] == "snapshots"]
            assert site.storage.snapshots is not None
            assert claim["persistentVolumeClaim"] == {"claimName": site.storage.snapshots.claim}
            build = step(wt, "build-models")
            build_args = build["container"]["args"]
            experiment, deployment = (
                "{{workflow.parameters.experiment}}",
                "{{workflow.parameters.deployment}}",
            )
            assert build_args == [
                "build-models",
                f"{experiment}/{deployment}",
                "--dest",
                f"/snapshots/{experiment}/{deployment}",
            ]
            (lock,) = build["outputs"]["artifacts"]
            assert (
                lock["path"] == f"/work/src/experiments/{experiment}/locks/{deployment}.repository.lock.json"
            )
            assert lock["optional"] is True and lock["archive"] == {"none": {}}


def test_scheduled_validation_checks_what_the_gitops_branch_deployed() -> None:
    # Issue 10.14: each check reads the deployment from its rendered directory on the GitOps
    # branch (the check spec ConfigMap Argo CD applied), not from main, which may hold changes
    # that were never rolled out.
    t = tree()
    crons = {o["metadata"]["name"]: o for o in of_kind("CronWorkflow")}
    for site in t.sites.values():
        placements = t.placements_at(site.name)
        if not placements:  # nothing to check: no CronWorkflow
            assert f"scheduled-validation-{site.name}" not in crons
            continue
        cron = crons[f"scheduled-validation-{site.name}"]
        assert cron["spec"]["schedules"] == sorted({p.checks.schedule for p in placements})
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        tasks = dag(cron)
        assert step(cron, "main")["dag"]["failFast"] is False
        assert set(tasks) == {f"check-{p.experiment}-{p.name}" for p in placements}
        for p in placements:
            template = step(cron, f"check-{p.experiment}-{p.name}")
            (checkout,) = [c for c in template["containerSet"]["containers"] if c["name"] == "checkout"]
            assert checkout["args"][checkout["args"].index("--ref") + 1] == settings().gitops_branch
            a = args(cron, f"check-{p.experiment}-{p.name}")
            assert a[a.index("--rendered") + 1] == f"gitops/rendered/{site.name}/{p.experiment}/{p.name}"
            assert a[a.index("--endpoint") + 1] == f"{envoy_service_host(p)}:8001"
            if site.prometheus is not None:  # the branch holds no site files to find it in
                assert a[a.index("--prometheus") + 1] == site.prometheus.url
            if site.pushgateway:
                assert a[:2] == ["pushgateway", "check"] and a[a.index("--url") + 1] == site.pushgateway
            else:
                assert a[0] == "check"
    assert any(s.pushgateway for s in t.sites.values()) and not all(s.pushgateway for s in t.sites.values())


def concurrent(tasks: dict[str, dict[str, Any]], a: str, b: str) -> bool:
    """Whether Argo may run tasks ``a`` and ``b`` of one DAG at the same time.

    A DAG task starts once its ``depends`` can be decided (argo-workflows dag.go,
    executeDAGTask), so two tasks run one after the other only when one is an ancestor of the
    other through ``depends``. A task expanded by withParam/withItems runs its items in
    parallel, so it is concurrent with itself.
    """

    def ancestors(name: str) -> set[str]:
        out: set[str] = set()
        for dep in re.findall(
            r"([a-zA-Z0-9][-a-zA-Z0-9]*)(?:\.[A-Z][a-zA-Z]+)?", tasks[name].get("depends", "")
        ):
            if dep in tasks and dep not in out:
                out |= {dep, *ancestors(dep)}
        return out

    if a == b:
        return "withParam" in tasks[a] or "withItems" in tasks[a]
    if exclusive(tasks[a].get("when", ""), tasks[b].get("when", "")):
        return False  # at most one of them runs
    return a not in ancestors(b) and b not in ancestors(a)


def exclusive(when_a: str, when_b: str) -> bool:
    """``X == true`` and ``X == false`` (the same X): never both true."""
    a, b = when_a.partition(" == "), when_b.partition(" == ")
    return bool(a[1] and b[1]) and a[0] == b[0] and {a[2], b[2]} == {"true", "false"}


def mounts(pod: dict[str, Any], volumes: set[str]) -> bool:
    """Whether any container of a pod template mounts one of ``volumes``."""
    containers = (
        [pod["container"]] if "container" in pod else pod.get("containerSet", {}).get("containers", [])
    )
    return any(m["name"] in volumes for c in containers for m in c.get("volumeMounts", []))


def test_no_two_pods_that_may_run_together_share_the_read_write_once_workspace() -> None:
    # Issue 10.9: the workspace claim is ReadWriteOnce, "mounted as read-write by a single node"
    # (kubernetes docs/concepts/storage/persistent-volumes.md, access modes); a second pod on
    # another node waits forever on a Multi-Attach error (attach-detach controller). Steps that
    # run in parallel bring their own checkout in an emptyDir instead (a container set).
    checked = 0
    for obj in [*of_kind("WorkflowTemplate"), *of_kind("CronWorkflow")]:
        spec = workflow_spec(obj)
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
        templates = {t["name"]: t for t in spec["templates"]}
        for t in templates.values():
            if "dag" not in t:
                continue
            tasks = {task["name"]: task for task in t["dag"]["tasks"]}

            sharing = [name for name, task in tasks.items() if mounts(templates[task["template"]], claims)]
            for a in sharing:
                for b in sharing:
                    assert not concurrent(tasks, a, b), (
                        f"{obj['metadata']['name']}: {a} and {b} may share it at once"
                    )
            checked += 1
        for t in templates.values():
            if "containerSet" in t:  # its own, per-pod workspace
                own = [v for v in t["volumes"] if v["name"] == "own-workspace"]
                assert len(own) == 1 and "emptyDir" in own[0]
                assert not [v for v in t["volumes"] if "persistentVolumeClaim" in v]
                # Every volume a container mounts is declared on the template: Argo adds
                # workflow-level volumes to a container set's pod only for the set-wide
                # volumeMounts (workflow/controller/workflowpod.go addVolumeReferences).
                mounted = {
                    m["name"] for c in t["containerSet"]["containers"] for m in c.get("volumeMounts", [])
                }
                assert mounted <= {v["name"] for v in t["volumes"]}, t["name"]
    assert checked >= 5
    # Negative controls: the previous wiring (a shared checkout before parallel tasks) is caught.
    fan_out = {"checkout": {}, "build": {"depends": "checkout.Succeeded", "withParam": "[]"}}
    assert concurrent(fan_out, "build", "build") and not concurrent(fan_out, "checkout", "build")
    siblings = {"checkout": {}, "a": {"depends": "checkout"}, "b": {"depends": "checkout.Succeeded"}}
    assert concurrent(siblings, "a", "b")
    either = {
        "a": {"when": "{{x}} == true"},
        "b": {"when": "{{x}} == false"},
        "c": {"when": "{{y}} == false"},
    }
    assert not concurrent(either, "a", "b") and concurrent(either, "a", "c")
    assert not any(o["spec"]["workflowSpec"].get("volumeClaimTemplates") for o in of_kind("CronWorkflow"))
