"""CronWorkflow ``scheduled-validation-<site>``: re-check every deployment at a site on a schedule.

::

    check cms/minimal ─┐   each: checkout of the GitOps branch ─► sonic check --rendered <its directory>
    check atlas/...   ─┴─ (all run in parallel; the workflow fails if any fails)

Schedules are the distinct ``checks.schedule`` values of the site's deployments; each run checks
every deployment (a check is cheap next to a missed outage). What is checked is what the GitOps
branch deployed (the check spec ConfigMap in the deployment's rendered directory there, the one
Argo CD applied), not what ``main`` declares: a change merged but not yet rolled out is not
held against the running deployment. Each check runs in its own pod with its own checkout
(a container set, no shared volume), so checks on different nodes never contend for one
ReadWriteOnce claim. With a Pushgateway configured for the site, each step runs ``sonic
pushgateway check``, which runs ``sonic check`` and pushes its result; without one, the step is
plain ``sonic check``. Endpoints are the in-cluster Envoy Services, so checks go through the
same path as clients.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import DAG, CronWorkflow, Task

from pipelines.config import Placement, Site, Tree
from pipelines.config.names import ENVOY_GRPC, SITE_LABEL, envoy_service_host, rendered_dir
from pipelines.workflows import rbac
from pipelines.workflows.settings import PipelineSettings
from pipelines.workflows.steps import (
    MEDIUM,
    MountedSecret,
    MountedSecretDir,
    argv,
    check_client,
    checked_out_step,
    flags,
    github_token,
    prometheus_token,
    workflow_spec,
)

PREFIX = "scheduled-validation"
JOB = "sonic_scheduled_validation"  # Pushgateway job label


def name(site: str) -> str:
    return f"{PREFIX}-{site}"


def needs_prometheus_token(site: Site) -> bool:
    return site.prometheus is not None and site.prometheus.auth is not None


def uses_jwt(p: Placement) -> bool:
    return p.envoy.auth is not None and p.envoy.auth.jwt is not None


def check_args(p: Placement, site: Site, settings: PipelineSettings) -> list[str]:
    """The arguments of ``sonic check`` (or ``sonic pushgateway check``) for one deployment.

    The deployment is read from its rendered directory in the GitOps branch checkout, which
    holds no site files: the site's Prometheus is passed explicitly.
    """
    args = flags(
        rendered=rendered_dir(p),
        site=p.site,
        endpoint=f"{envoy_service_host(p)}:{ENVOY_GRPC}",
        timeout=f"{p.checks.timeout:g}",
    )
    if site.prometheus is not None:
        args += flags(prometheus=site.prometheus.url)
    if uses_jwt(p):
        args += flags(client_credentials=check_client(settings).path)
    if needs_prometheus_token(site):
        args += flags(prometheus_token_file=prometheus_token(settings).file)
    if site.pushgateway:
        return [*argv("pushgateway", "check", url=site.pushgateway, job=JOB), *args]
    return ["check", *args, *flags(format="json")]


def cron_workflow(settings: PipelineSettings, tree: Tree, site: Site) -> CronWorkflow | None:
    """The site's CronWorkflow, or None when no deployment runs there."""
    placements = tree.placements_at(site.name)
    if not placements:
        return None
    token = github_token(settings)
    # Only the Secrets some check here needs.
    secrets: list[MountedSecret | MountedSecretDir] = []
    if any(uses_jwt(p) for p in placements):
        secrets.append(check_client(settings))
    if needs_prometheus_token(site):
        secrets.append(prometheus_token(settings))
    checks = [
        (
            f"check-{p.experiment}-{p.name}",
            checked_out_step(
                f"check-{p.experiment}-{p.name}",
                check_args(p, site, settings),
                settings,
                token,
                repository=settings.repository,
                ref=settings.gitops_branch,
                size=MEDIUM,
                network=True,
                deadline=int(p.checks.timeout) + 300,
                secrets=secrets,
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
                SITE_LABEL: site.name,
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
                workspace=None,  # every check has its own checkout
            ),
        ) as cw,
        DAG(name="main", fail_fast=False),
    ):  # every deployment is checked, whatever failed before
        for task_name, step in checks:
            Task(name=task_name, template=step)
    return cw


def objects(settings: PipelineSettings, tree: Tree, site: Site) -> list[dict[str, Any]]:
    cw = cron_workflow(settings, tree, site)
    return [] if cw is None else [cw.to_dict()]
