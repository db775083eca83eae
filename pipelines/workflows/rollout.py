"""WorkflowTemplate ``rollout``: move one deployment at one site to a reviewed commit, or back.

::

    checkout ─► render ─► target ─► commit (GitOps branch, as the bot)
                                      └─► wait (Argo CD: Synced + Healthy at that commit)
                                            └─► verify (sonic check, report kept)
    wait or verify failed ─► revert (that commit, pushed) ─► fail with the check report

Runs in the site's cluster (it reads the site's Argo CD Applications). Only the ``wait`` step
gets a Kubernetes token, and its ServiceAccount may only read Applications in Argo CD's
namespace. The push token is mounted only where git pushes.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate

from pipelines.config import Tree
from pipelines.workflows import rbac
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import (
    MEDIUM,
    OUTPUTS,
    SRC,
    WORKSPACE,
    WORKSPACE_MOUNT,
    argv,
    check_client,
    checkout_step,
    github_token,
    pod_error_retry,
    prometheus_token,
    push_token,
    repository_parameter,
    sonic_step,
    task_output,
    wf_param,
    workflow_spec,
)

NAME = "rollout"
REPORT = f"{WORKSPACE}/check-report.json"
FAILED = "wait.Failed || wait.Errored || verify.Failed || verify.Errored"


def template(settings: PipelineSettings) -> WorkflowTemplate:
    """The ``rollout`` WorkflowTemplate."""
    push = push_token(settings)
    read = github_token(settings)  # the wait step only fetches the GitOps branch
    # Optional: only deployments behind JWT auth and Prometheus servers that want a token need them.
    check = check_client(settings, optional=True)
    prometheus = prometheus_token(settings, optional=True)
    git_mounts = [WORKSPACE_MOUNT, push.mount()]
    site, deployment = wf_param("site"), wf_param("deployment")
    target_out = {
        k: task_output("target", k) for k in ("application", "argocd-namespace", "endpoint", "path")
    }
    commit_sha = task_output("commit", "commit")
    remote = {"remote": settings.clone_url, "branch": wf_param("gitops-branch"), "token_file": push.file}

    checkout = checkout_step(
        settings, push, repository=wf_param("repository"), ref=wf_param("revision"), outputs=("head",)
    )
    render = sonic_step("render", ["render"], settings, size=MEDIUM)
    target = sonic_step(
        "target",
        argv("rollout", "target", site=site, deployment=deployment, outputs=OUTPUTS),
        settings,
        outputs=("application", "argocd-namespace", "endpoint", "path", "deployment"),
    )
    commit = sonic_step(
        "commit",
        argv(
            "rollout",
            "commit",
            source=SRC,
            path=target_out["path"],
            site=site,
            deployment=task_output("target", "deployment"),
            source_revision=task_output("checkout", "head"),
            workflow="{{workflow.name}}",
            workdir=f"{WORKSPACE}/gitops",
            outputs=OUTPUTS,
            **remote,
        ),
        settings,
        network=True,
        mounts=git_mounts,
        outputs=("commit", "changed"),
    )
    wait = sonic_step(
        "wait",
        argv(
            "rollout",
            "wait",
            application=target_out["application"],
            namespace=target_out["argocd-namespace"],
            revision=commit_sha,
            timeout=wf_param("sync-timeout"),
            # The commit step's working copy: a later commit of a neighbour's rollout that
            # contains ours is our success too (all sites follow one branch).
            checkout=f"{WORKSPACE}/gitops",
            branch=wf_param("gitops-branch"),
            token_file=read.file,
        ),
        settings,
        deadline=3600,
        mounts=[WORKSPACE_MOUNT, read.mount()],
        workdir=None,
        # Polling already rides out API hiccups; a failed wait is a verdict, not a glitch.
        retry=pod_error_retry(),
    )
    # The only step that reads the Kubernetes API. Argo copies this value to the pod only when it
    # is false (workflowpod.go, setupServiceAccount): true here means "not turned off", and the
    # token then comes from sonic-rollout, whose automount is on (see objects()).
    wait.automount_service_account_token = True
    verify = sonic_step(
        "verify",
        argv(
            "rollout",
            "verify",
            task_output("target", "deployment"),
            site=site,
            endpoint=target_out["endpoint"],
            report_file=REPORT,
            client_credentials=check.path,
            prometheus_token_file=prometheus.file,
        ),
        settings,
        size=MEDIUM,
        network=True,
        deadline=1800,
        mounts=[WORKSPACE_MOUNT, check.mount(), prometheus.mount()],
    )
    revert = sonic_step(
        "revert",
        argv(
            "rollout",
            "revert",
            commit=commit_sha,
            report_file=REPORT,
            workflow="{{workflow.name}}",
            workdir=f"{WORKSPACE}/revert",
            **remote,
        ),
        settings,
        network=True,
        mounts=git_mounts,
    )

    with (
        WorkflowTemplate(
            name=NAME,
            annotations={
                "workflows.argoproj.io/description": "Roll one deployment out at one site through Argo CD."
            },
            entrypoint="main",
            arguments=[
                Parameter(name="site", description="site to roll out at"),
                Parameter(name="deployment", description="EXPERIMENT/NAME of the deployment"),
                Parameter(
                    name="revision",
                    description="reviewed commit (or branch) to roll out",
                    value=settings.base_branch,
                ),
                repository_parameter(settings),
                Parameter(
                    name="gitops-branch",
                    description="branch Argo CD syncs from",
                    value=settings.gitops_branch,
                ),
                Parameter(
                    name="sync-timeout", description="how long to wait for Synced and Healthy", value="15m"
                ),
            ],
            **workflow_spec(
                settings,
                rbac.ROLLOUT_SA,
                deadline=2 * 3600,
                secrets=[push, read, check, prometheus],
                # One rollout per site at a time: a revert must never undo a neighbour's half-done rollout.
                mutex=f"rollout-{site}",
            ),
        ) as wt,
        DAG(name="main"),
    ):
        Task(name="checkout", template=checkout)
        Task(name="render", template=render, depends="checkout.Succeeded")
        Task(name="target", template=target, depends="render.Succeeded")
        Task(name="commit", template=commit, depends="target.Succeeded")
        Task(name="wait", template=wait, depends="commit.Succeeded")
        Task(name="verify", template=verify, depends="wait.Succeeded")
        Task(
            name="revert",
            template=revert,
            depends=f"({FAILED})",
            # Nothing was committed when the branch already matched: there is nothing to undo.
            when=f"{task_output('commit', 'changed')} == true",
        )
    return wt


def argocd_namespaces(tree: Tree) -> list[str]:
    return sorted({s.argocd.namespace for s in tree.sites.values()})


def objects(settings: PipelineSettings, tree: Tree) -> list[dict[str, Any]]:
    """The template, its ServiceAccount, and read access to Applications in each Argo CD namespace."""
    # The account allows a token; the workflow spec turns it off for every step but ``wait``.
    out = [rbac.service_account(rbac.ROLLOUT_SA, settings.namespace, token=True)]
    for ns in argocd_namespaces(tree):
        out += rbac.rollout_argocd_access(ns, settings.namespace)
    out.append(template(settings).to_dict())
    return out
