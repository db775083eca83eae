"""WorkflowTemplate ``pr-validation``: what a pull request would do, checked before anyone merges it.

::

    pending status ─┐
    checkout ───────┴─► owners check ─► validate ──┬─► build-models --dry-run (one per changed deployment)
                        (always)      (if relevant) └─► render --check ─► pipelines render --check
                                                        ─► verify rendered objects offline
                                                        (always, whatever validate said or skipped)
    on exit (always): commit status + the one bot comment summarising per site what changes

The pull-request head is checked out from ``refs/pull/<n>/head`` (forks work) at exactly the
commit the event named. GitHub's pull_request payload lists no files, so the Sensor cannot tell
whether a pull request touches ``experiments/`` or ``gitops/sites/``: the checkout step decides
(``relevant``) and validation and model builds are skipped when it does not. The ownership
check, the render check, the pipeline-render check and the offline verification always run, so
a change to ``gitops/repository.yaml``, ``gitops/rendered``, ``gitops/argocd``,
``gitops/workflows``, ``schemas/`` or ``pipelines/`` never gets a green status without them
(docs/security.md, Ownership). They run the pipeline image's ``sonic``, not the pull
request's code: a pull request that changes ``pipelines/`` is checked against the released
renderer, and its own code is tested by CI (.github/workflows/ci.yaml).

No step talks to the Kubernetes API: the workflow's pods get no ServiceAccount token.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate

from pipelines.config import layout
from pipelines.workflows import rbac
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import (
    LARGE,
    MEDIUM,
    SRC,
    argv,
    checked_out_step,
    checkout_step,
    github_step,
    github_token,
    repository_parameter,
    sonic_step,
    task_output,
    wf_param,
    workflow_spec,
)

NAME = "pr-validation"
# Which changes are worth validating (the checkout step's ``relevant`` output).
PATHS = (f"{layout.EXPERIMENTS_DIR}/", f"{layout.SITES_DIR}/")
# Offline verification of the rendered objects, in the image that has Envoy and promtool.
VERIFY_ARGS = ["pipelines", "verify-rendered", "--require-all"]
# The rendered Argo Workflows objects (gitops/workflows) match what the pipeline image renders.
PIPELINES_CHECK_ARGS = ["pipelines", "render", "--check"]
# The pull request changes the files of one owner only (and what is generated from them).
# The checks whose every outcome reaches the status: the verdict task fails the run if one failed.
GATED_CHECKS = ("owners-check", "validate", "render-check", "pipelines-render-check", "verify-rendered")
OWNERS_ARGS = ["owners", "check", "--against", "{{inputs.parameters.base-sha}}"]


def template(settings: PipelineSettings) -> WorkflowTemplate:
    """The ``pr-validation`` WorkflowTemplate."""
    token = github_token(settings)
    repo, pr, sha, base = (wf_param(p) for p in ("repository", "pr-number", "head-sha", "base-ref"))
    api = {"api_url": settings.github_api, "token_file": token.file}

    pending = github_step(
        "report-pending",
        argv(
            "github",
            "status",
            repository=repo,
            sha=sha,
            state="pending",
            context=settings.status_context,
            description="validation running",
            target_url=wf_param("details-url"),
            **api,
        ),
        settings,
        token,
    )
    checkout = checkout_step(
        settings,
        token,
        repository=repo,
        pr=pr,
        ref=sha,
        base_ref=base,
        relevant=PATHS,
        outputs=("base-sha", "relevant", "deployments"),
    )
    validate = sonic_step(
        "validate",
        ["validate", "--changed-against", "{{inputs.parameters.base-sha}}"],
        settings,
        size=MEDIUM,
        inputs=("base-sha",),
    )
    # Artifacts are fetched and verified (sha256, ONNX graph against the declared config), so
    # this talks to the network; nothing is published. One task per deployment, in parallel:
    # each brings its own checkout of the pull request instead of sharing the workspace claim.
    build = checked_out_step(
        "build-models-dry-run",
        ["build-models", "{{inputs.parameters.deployment}}", "--dry-run"],
        settings,
        token,
        repository=repo,
        pr=pr,
        ref=sha,
        size=LARGE,
        network=True,
        deadline=1800,
        inputs=("deployment",),
    )
    owners_check = sonic_step("owners-check", OWNERS_ARGS, settings, size=MEDIUM, inputs=("base-sha",))
    render_check = sonic_step("render-check", ["render", "--check"], settings, size=MEDIUM)
    pipelines_check = sonic_step("pipelines-render-check", PIPELINES_CHECK_ARGS, settings, size=MEDIUM)
    verify = sonic_step("verify-rendered", VERIFY_ARGS, settings, size=MEDIUM)
    verdict = sonic_step(
        "verdict",
        ["pipelines", "verdict", *(f"{c}={{{{inputs.parameters.{c}}}}}" for c in GATED_CHECKS)],
        settings,
        inputs=GATED_CHECKS,
        workdir=None,
        mounts=(),
    )
    status = github_step(
        "report-status",
        argv(
            "github",
            "status",
            repository=repo,
            sha=sha,
            workflow_status="{{workflow.status}}",
            context=settings.status_context,
            target_url=wf_param("details-url"),
            **api,
        ),
        settings,
        token,
    )
    comment = github_step(
        "report-comment",
        argv(
            "github",
            "comment",
            repository=repo,
            pr=pr,
            sha=sha,
            workflow_status="{{workflow.status}}",
            failures="{{workflow.failures}}",
            workflow="{{workflow.name}}",
            details_url=wf_param("details-url"),
            checkout=SRC,
            base_ref=base,
            relevant=PATHS,
            skip_if_irrelevant=True,
            **api,
        ),
        settings,
        token,
        workspace=True,
    )

    with WorkflowTemplate(
        name=NAME,
        annotations={"workflows.argoproj.io/description": "Validate a pull request and report on it."},
        entrypoint="main",
        on_exit="report",
        arguments=[
            repository_parameter(settings),
            Parameter(name="pr-number", description="pull request number"),
            Parameter(name="head-sha", description="commit to validate (the pull request's head)"),
            Parameter(
                name="base-ref", description="branch the pull request targets", value=settings.base_branch
            ),
            Parameter(
                name="details-url", description="link shown with the commit status (optional)", value=""
            ),
        ],
        **workflow_spec(
            settings,
            rbac.PR_VALIDATION_SA,
            deadline=3600,
            secrets=[token],
            # One run per pull request at a time, so an older run never overwrites a newer comment last.
            mutex=f"pr-validation-{pr}",
        ),
    ) as wt:
        with DAG(name="main"):
            t_pending = Task(name="report-pending", template=pending)
            t_checkout = Task(name="checkout", template=checkout)
            # Whatever the pull request touches, and before anything else reads the workspace.
            t_owners = Task(
                name="owners-check",
                template=owners_check,
                depends="checkout.Succeeded",
                arguments={"base-sha": task_output("checkout", "base-sha")},
            )
            t_validate = Task(
                name="validate",
                template=validate,
                depends="owners-check.Succeeded || owners-check.Failed",
                when=f"{task_output('checkout', 'relevant')} == true",
                arguments={"base-sha": task_output("checkout", "base-sha")},
            )
            Task(
                name="build-models",
                template=build,
                depends="validate.Succeeded",
                with_param=task_output("checkout", "deployments"),
                arguments={"deployment": "{{item}}"},
            )
            # The render check and the offline verification run whatever validate said, and also
            # when it was skipped: in Argo's enhanced depends, a task whose `when` was false is
            # Skipped, and Skipped is not Succeeded (argo-workflows workflow/controller/dag.go,
            # evaluateDependsLogic). A pull request that edits gitops/rendered/ by hand touches no
            # relevant path, and must still fail the render check. They run one after another
            # because they share the workspace volume with validate.
            t_render = Task(
                name="render-check",
                template=render_check,
                depends="validate.Succeeded || validate.Skipped || validate.Failed",
            )
            t_pipelines = Task(
                name="pipelines-render-check",
                template=pipelines_check,
                depends="render-check.Succeeded || render-check.Failed",
            )
            Task(
                name="verify-rendered",
                template=verify,
                depends="pipelines-render-check.Succeeded || pipelines-render-check.Failed",
            )
            # Each check above runs whatever the one before it said, so its failure is "handled"
            # and Argo would take the workflow's phase from the last check alone (dag.go,
            # assessDAGPhase): the verdict fails the run when any check failed.
            Task(
                name="verdict",
                template=verdict,
                depends="verify-rendered.Succeeded || verify-rendered.Failed",
                arguments={c: f"{{{{tasks.{c}.status}}}}" for c in GATED_CHECKS},
            )
            _ = (t_pending, t_checkout, t_owners, t_validate, t_render, t_pipelines)
        with DAG(name="report"):
            Task(name="status", template=status)
            Task(name="comment", template=comment)
    return wt


def objects(settings: PipelineSettings) -> list[dict[str, Any]]:
    """The template and its (powerless) ServiceAccount."""
    return [
        rbac.service_account(rbac.PR_VALIDATION_SA, settings.namespace, token=False),
        template(settings).to_dict(),
    ]
