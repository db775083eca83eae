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

from pipelines.config import Site, SiteDeployment, Tree
from pipelines.render.names import ENVOY_GRPC, deployment_ref, envoy_service_host
from pipelines.workflows import rbac
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import (
    MEDIUM,
    WORKSPACE_MOUNT,
    MountedSecret,
    argv,
    check_token,
    checkout_step,
    flags,
    github_token,
    prometheus_token,
    sonic_step,
    workflow_spec,
)

PREFIX = "scheduled-validation"
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
        args += flags(token_file=check_token(settings).file)
    if needs_prometheus_token(site):
        args += flags(prometheus_token_file=prometheus_token(settings).file)
    if site.pushgateway:
        return [*argv("pushgateway", "check", url=site.pushgateway, job=JOB), *args, deployment_ref(p)]
    return ["check", *args, *flags(format="json"), deployment_ref(p)]


def cron_workflow(settings: PipelineSettings, tree: Tree, site: Site) -> CronWorkflow | None:
    """The site's CronWorkflow, or None when no deployment runs there."""
    placements = tree.site_deployments(site.name)
    if not placements:
        return None
    token = github_token(settings)
    # Only the Secrets some check here needs.
    secrets: list[MountedSecret] = []
    if any(uses_jwt(p) for p in placements):
        secrets.append(check_token(settings))
    if needs_prometheus_token(site):
        secrets.append(prometheus_token(settings))
    check_mounts = [WORKSPACE_MOUNT, *(s.mount() for s in secrets)]

    checkout = checkout_step(settings, token, repository=settings.repository, ref=settings.base_branch)
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
                mounts=check_mounts,
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
            **workflow_spec(
                settings,
                rbac.SCHEDULED_SA,
                deadline=3600,
                secrets=[token, *secrets],
                workspace="1Gi",
            ),
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
