"""CronWorkflow ``scheduled-validation-<site>``: re-check every deployment at a site on a schedule.

::

    checkout (base branch) ─► check cms/minimal ─┐
                           ─► check atlas/...   ─┴─ (all run; the workflow fails if any fails)

Schedules are the distinct ``checks.schedule`` values of the site's deployments; each run checks
every deployment (a check is cheap next to a missed outage). With a Pushgateway configured for
the site, each step runs ``sonic pushgateway check``, which runs ``sonic check`` and pushes its
result; without one, the step is plain ``sonic check``. Endpoints are the in-cluster Envoy
Services, so checks go through the same path as clients.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, CronWorkflow, Task
from hera.workflows import models as m

from pipelines.config import Site, SiteDeployment, Tree
from pipelines.render.names import ENVOY_GRPC, deployment_ref, envoy_service_host
from pipelines.workflows import rbac
from pipelines.workflows.rollout import PROMETHEUS_VOLUME
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import (
    MEDIUM,
    SRC,
    TMP_VOLUME,
    WORKSPACE,
    WORKSPACE_MOUNT,
    argv,
    flags,
    secret_file,
    secret_mount,
    secret_volume,
    sonic_step,
    workflow_spec_defaults,
    workspace_claim,
)

PREFIX = "scheduled-validation"
TOKEN_VOLUME = "github-token"
CHECK_VOLUME = "check-token"
JOB = "sonic_scheduled_validation"  # Pushgateway job label


def name(site: str) -> str:
    return f"{PREFIX}-{site}"


def needs_prometheus_token(site: Site) -> bool:
    return site.prometheus is not None and site.prometheus.auth is not None


def uses_jwt(p: SiteDeployment) -> bool:
    return p.envoy.auth is not None and p.envoy.auth.jwt is not None


def check_args(p: SiteDeployment, site: Site, settings: PipelineSettings) -> list[str]:
    """The arguments of ``sonic check`` (or ``sonic pushgateway check``) for one deployment."""
    args = flags(
        site=p.site, endpoint=f"{envoy_service_host(p)}:{ENVOY_GRPC}", timeout=f"{p.checks.timeout:g}"
    )
    if uses_jwt(p):
        args += flags(token_file=secret_file(CHECK_VOLUME, settings.check_token))
    if needs_prometheus_token(site):
        args += flags(prometheus_token_file=secret_file(PROMETHEUS_VOLUME, settings.prometheus_token))
    if site.pushgateway:
        return [*argv("pushgateway", "check", url=site.pushgateway, job=JOB), *args, deployment_ref(p)]
    return ["check", *args, *flags(format="json"), deployment_ref(p)]


def cron_workflow(settings: PipelineSettings, tree: Tree, site: Site) -> CronWorkflow | None:
    """The site's CronWorkflow, or None when no deployment runs there."""
    placements = tree.site_deployments(site.name)
    if not placements:
        return None
    token = secret_file(TOKEN_VOLUME, settings.github_token)
    mounts = [WORKSPACE_MOUNT]
    volumes = [TMP_VOLUME, secret_volume(TOKEN_VOLUME, settings.github_token)]
    if any(uses_jwt(p) for p in placements):
        mounts.append(secret_mount(CHECK_VOLUME))
        volumes.append(secret_volume(CHECK_VOLUME, settings.check_token))
    if needs_prometheus_token(site):
        mounts.append(secret_mount(PROMETHEUS_VOLUME))
        volumes.append(secret_volume(PROMETHEUS_VOLUME, settings.prometheus_token))

    checkout = sonic_step(
        "checkout",
        argv(
            "github",
            "checkout",
            repository=settings.repository,
            server=settings.git_server,
            ref=settings.base_branch,
            dest=SRC,
            token_file=token,
        ),
        settings,
        network=True,
        mounts=[WORKSPACE_MOUNT, secret_mount(TOKEN_VOLUME)],
        workdir=WORKSPACE,
    )
    checks = [
        (
            f"check-{p.experiment}-{p.name}",
            sonic_step(
                f"check-{p.experiment}-{p.name}",
                check_args(p, site, settings),
                settings,
                size=MEDIUM,
                network=True,
                deadline=int(p.checks.timeout) + 300,
                mounts=mounts,
            ),
        )
        for p in placements
    ]
    schedules = sorted({p.checks.schedule for p in placements})
    with (
        CronWorkflow(
            name=name(site.name),
            annotations={
                "workflows.argoproj.io/description": f"Check every deployment at site {site.name}.",
                "sonic.fastml.org/site": site.name,
            },
            schedules=schedules,
            timezone="UTC",
            concurrency_policy="Forbid",
            starting_deadline_seconds=600,
            successful_jobs_history_limit=3,
            failed_jobs_history_limit=5,
            entrypoint="main",
            automount_service_account_token=False,
            volume_claim_templates=[workspace_claim("1Gi")],
            volume_claim_gc=m.VolumeClaimGC(strategy="OnWorkflowCompletion"),
            volumes=volumes,
            **workflow_spec_defaults(settings, rbac.SCHEDULED_SA, deadline=3600),
        ) as cw,
        DAG(name="main", fail_fast=False),
    ):  # every deployment is checked, whatever failed before
        Task(name="checkout", template=checkout)
        for task_name, step in checks:
            Task(name=task_name, template=step, depends="checkout.Succeeded")
    return cw


def objects(settings: PipelineSettings, tree: Tree, site: Site) -> list[dict[str, Any]]:
    cw = cron_workflow(settings, tree, site)
    return [] if cw is None else [cw.to_dict()]
