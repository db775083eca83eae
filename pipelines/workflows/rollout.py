"""WorkflowTemplate ``rollout``: move one deployment at one site to a reviewed commit, or back.

::

    checkout ─► render ─► target ─► commit (GitOps branch, as the bot)
                                      └─► wait | wait-remote (Argo CD: Synced + Healthy at a
                                            │                 commit containing ours)
                                            └─► verify (sonic check, report kept)
    wait or verify failed ─► revert (that commit, pushed) ─► fail with the check report

Two topologies (the site file's ``rollout``): Argo CD in the site's cluster, where the rollout
runs too (``wait`` reads the Applications with this pod's token: the only step that gets one,
and its ServiceAccount may only read Applications in Argo CD's namespace); or a central Argo CD
(``wait-remote`` reads them through the site's kubeconfig Secret, no token of this cluster).
``verify`` reaches the deployment through its in-cluster Service or, when the rollout runs
elsewhere, through its ingress over TLS (``target`` says which). The push token is mounted only
where git pushes.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, Container, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from pipelines.config import Tree
from pipelines.config.names import ARGOCD_KUBECONFIG_DIR
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
    sonic_step,
    task_output,
    wf_param,
    workflow_spec,
)

NAME = "rollout"
REPORT = f"{WORKSPACE}/check-report.json"
TARGET_OUTPUTS = (
    "application", "argocd-namespace", "argocd-remote", "argocd-kubeconfig", "endpoint", "path", "deployment"
)  # fmt: skip


def kubeconfig_volume(tree: Tree) -> m.Volume | None:
    """Every site's Argo CD kubeconfig Secret (sites with a central Argo CD), at <dir>/<name>/<key>.

    One template serves every site, so its wait step mounts each Secret a site names, each
    optional: a cluster holds only those of the sites it rolls out. None when no site needs one.
    """
    refs = sorted(
        {(s.rollout.argocd_kubeconfig.name, s.rollout.argocd_kubeconfig.key)
         for s in tree.sites.values() if s.rollout.argocd_kubeconfig is not None}
    )  # fmt: skip
    if not refs:
        return None
    return m.Volume(
        name="argocd-kubeconfig",
        projected=m.ProjectedVolumeSource(
            default_mode=0o440,
            sources=[
                m.VolumeProjection(
                    secret=m.SecretProjection(
                        name=name, items=[m.KeyToPath(key=key, path=f"{name}/{key}")], optional=True
                    )
                )
                for name, key in refs
            ],
        ),
    )


def template(settings: PipelineSettings, tree: Tree | None = None) -> WorkflowTemplate:
    """The ``rollout`` WorkflowTemplate (with a ``wait-remote`` step when a site's Argo CD is central)."""
    push = push_token(settings)
    read = github_token(settings)  # the wait step only fetches the GitOps branch
    # Optional: only deployments behind JWT auth and Prometheus servers that want a token need them.
    check = check_client(settings, optional=True)
    prometheus = prometheus_token(settings, optional=True)
    git_mounts = [WORKSPACE_MOUNT, push.mount()]
    site, deployment = wf_param("site"), wf_param("deployment")

    # A template reads only its own inputs; the DAG task hands it other tasks' outputs. Argo
    # resolves {{tasks.*}} in a task's arguments, never inside a template, and refuses the whole
    # workflow at submission otherwise (argo-workflows workflow/validate/validate.go,
    # "failed to resolve {{tasks...}}").
    def inp(name: str) -> str:
        return f"{{{{inputs.parameters.{name}}}}}"

    def outputs_of(task: str, *names: str, **renamed: str) -> dict[str, str]:
        return {n: task_output(task, n) for n in names} | {
            k: task_output(task, v) for k, v in renamed.items()
        }

    remote = {"remote": settings.clone_url, "branch": wf_param("gitops-branch"), "token_file": push.file}

    # Only a commit on the protected base branch of the configuration repository may roll out:
    # both are fixed here, not parameters, so whoever submits the workflow can name neither a
    # pull request's commit nor a fork whose branch holds anything.
    checkout = checkout_step(
        settings,
        push,
        repository=settings.repository,
        ref=wf_param("revision"),
        on_branch=settings.base_branch,
        outputs=("head",),
    )
    render = sonic_step("render", ["render"], settings, size=MEDIUM)
    target = sonic_step(
        "target",
        argv("rollout", "target", site=site, deployment=deployment, outputs=OUTPUTS),
        settings,
        outputs=TARGET_OUTPUTS,
    )
    commit = sonic_step(
        "commit",
        argv(
            "rollout",
            "commit",
            source=SRC,
            path=inp("path"),
            site=site,
            deployment=inp("deployment"),
            source_revision=inp("head"),
            workflow="{{workflow.name}}",
            workdir=f"{WORKSPACE}/gitops",
            outputs=OUTPUTS,
            **remote,
        ),
        settings,
        network=True,
        mounts=git_mounts,
        outputs=("commit", "changed"),
        inputs=("path", "deployment", "head"),
    )

    def wait_step(
        name: str, kubeconfig: dict[str, str], mounts: list[m.VolumeMount], inputs: tuple[str, ...] = ()
    ) -> Container:
        return sonic_step(
            name,
            argv(
                "rollout",
                "wait",
                application=inp("application"),
                namespace=inp("argocd-namespace"),
                revision=inp("commit"),
                timeout=wf_param("sync-timeout"),
                # The commit step's working copy: a later commit of a neighbour's rollout that
                # contains ours is our success too (all sites follow one branch).
                checkout=f"{WORKSPACE}/gitops",
                branch=wf_param("gitops-branch"),
                token_file=read.file,
                **kubeconfig,
            ),
            settings,
            deadline=3600,
            mounts=[WORKSPACE_MOUNT, read.mount(), *mounts],
            workdir=None,
            # Polling already rides out API hiccups; a failed wait is a verdict, not a glitch.
            retry=pod_error_retry(),
            inputs=("application", "argocd-namespace", "commit", *inputs),
        )

    # Argo CD in this cluster: Applications read with this pod's ServiceAccount token, the only
    # step that gets one. Argo copies this value to the pod only when it is false
    # (workflowpod.go, setupServiceAccount): true here means "not turned off", and the token then
    # comes from sonic-rollout, whose automount is on (see objects()).
    wait = wait_step("wait", {}, [])
    wait.automount_service_account_token = True
    # Argo CD elsewhere (a central instance): Applications read through the site's kubeconfig
    # Secret; no Kubernetes token of this cluster is needed.
    volume = kubeconfig_volume(tree) if tree is not None else None
    wait_remote = (
        wait_step(
            "wait-remote",
            {"kubeconfig": inp("argocd-kubeconfig")},
            [m.VolumeMount(name=volume.name, mount_path=ARGOCD_KUBECONFIG_DIR, read_only=True)],
            ("argocd-kubeconfig",),
        )
        if volume is not None
        else None
    )
    verify = sonic_step(
        "verify",
        argv(
            "rollout",
            "verify",
            inp("deployment"),
            site=site,
            endpoint=inp("endpoint"),
            report_file=REPORT,
            client_credentials=check.path,
            prometheus_token_file=prometheus.file,
        ),
        settings,
        size=MEDIUM,
        network=True,
        deadline=1800,
        mounts=[WORKSPACE_MOUNT, check.mount(), prometheus.mount()],
        inputs=("deployment", "endpoint"),
    )
    revert = sonic_step(
        "revert",
        argv(
            "rollout",
            "revert",
            commit=inp("commit"),
            report_file=REPORT,
            workflow="{{workflow.name}}",
            workdir=f"{WORKSPACE}/revert",
            **remote,
        ),
        settings,
        network=True,
        mounts=git_mounts,
        inputs=("commit",),
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
                volumes=[volume] if volume is not None else [],
                # One rollout per site at a time: a revert must never undo a neighbour's half-done rollout.
                mutex=f"rollout-{site}",
            ),
        ) as wt,
        DAG(name="main"),
    ):
        Task(name="checkout", template=checkout)
        Task(name="render", template=render, depends="checkout.Succeeded")
        Task(name="target", template=target, depends="render.Succeeded")
        Task(
            name="commit",
            template=commit,
            depends="target.Succeeded",
            arguments=outputs_of("target", "path", "deployment") | outputs_of("checkout", "head"),
        )
        to_wait = outputs_of("target", "application", "argocd-namespace") | outputs_of("commit", "commit")
        argocd_remote = task_output("target", "argocd-remote")
        waits = ["wait"]
        if wait_remote is None:
            Task(name="wait", template=wait, depends="commit.Succeeded", arguments=to_wait)
        else:
            # Exactly one of the two runs; the other is Skipped (its `when` is false).
            Task(
                name="wait",
                template=wait,
                depends="commit.Succeeded",
                when=f"{argocd_remote} == false",
                arguments=to_wait,
            )
            Task(
                name="wait-remote",
                template=wait_remote,
                depends="commit.Succeeded",
                when=f"{argocd_remote} == true",
                arguments=to_wait | outputs_of("target", "argocd-kubeconfig"),
            )
            waits.append("wait-remote")
        Task(
            name="verify",
            template=verify,
            depends=" || ".join(f"{w}.Succeeded" for w in waits),
            arguments=outputs_of("target", "deployment", "endpoint"),
        )
        failed = [f"{t}.{r}" for t in (*waits, "verify") for r in ("Failed", "Errored")]
        Task(
            name="revert",
            template=revert,
            depends=f"({' || '.join(failed)})",
            # Nothing was committed when the branch already matched: there is nothing to undo.
            when=f"{task_output('commit', 'changed')} == true",
            arguments=outputs_of("commit", "commit"),
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
    out.append(template(settings, tree).to_dict())
    return out
