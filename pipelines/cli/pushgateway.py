"""``sonic pushgateway``: push check results to a Prometheus Pushgateway.

\b
  sonic pushgateway check DEPLOYMENT --url URL --endpoint HOST:PORT   run sonic check, push, exit with its code
  sonic pushgateway push REPORT.json --url URL --exit-code N          push a report written earlier
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from pipelines.cli import EXIT_INVALID, cli, die, err
from pipelines.cli.options import (
    die_remote,
    dir_option,
    endpoint_option,
    forwarded_check_args,
    forwarded_check_options,
    site_option,
)
from pipelines.config import layout
from pipelines.ops.check_runner import run_check
from pipelines.ops.pushgateway import PushError, check_metrics, exposition, push

url_option = click.option(
    "--url", required=True, help="Pushgateway base URL, e.g. http://pushgateway.monitoring.svc:9091."
)
job_option = click.option("--job", default="sonic_scheduled_validation", show_default=True, help="Job label.")


@cli.group()
def pushgateway() -> None:
    """Publish scheduled check results as Prometheus metrics (Pushgateway, text format)."""


def _grouping(report: dict[str, Any] | None, deployment: str, site: str | None) -> list[tuple[str, str]]:
    """The grouping labels: from the report when the check wrote one, else from what was asked."""
    experiment, _, name = deployment.rpartition("/")
    site = site or (str(report.get("site")) if report and report.get("site") else "")
    if report and isinstance(report.get("deployment"), str) and "/" in report["deployment"]:
        experiment, _, name = report["deployment"].rpartition("/")
    return [("site", site), ("experiment", experiment), ("deployment", name)]


def _push(url: str, job: str, grouping: list[tuple[str, str]], text: str) -> None:
    try:
        push(url, job, grouping, text)
    except PushError as exc:
        die_remote(str(exc), transient=exc.transient)
    except ValueError as exc:
        die(str(exc), EXIT_INVALID)


@pushgateway.command()
@click.argument("deployment", required=False)
@dir_option(
    "--rendered",
    "rendered_dir",
    help=f"Passed to sonic check: check the deployment rendered in this "
    f"{layout.rendered_dir('<site>', '<experiment>', '<deployment>')} directory instead of DEPLOYMENT.",
)
@url_option
@job_option
@endpoint_option("Passed to sonic check.")
@site_option("Passed to sonic check, and the site label.")
@forwarded_check_options(
    token_file_help="Passed to sonic check.",
    prometheus_token_file_help="Passed to sonic check.",
    timeout_help="Seconds for sonic check.",
)
def check(
    deployment: str | None,
    rendered_dir: Path | None,
    url: str,
    job: str,
    endpoint: str,
    site: str | None,
    token_file: Path | None,
    client_credentials: Path | None,
    prometheus_token_file: Path | None,
    prometheus_url: str | None,
    timeout: float,
) -> None:
    """Run `sonic check` on DEPLOYMENT (or --rendered DIR), push the result, exit with the check's code.

    A push that fails makes the step exit 2 (retried) even when the check passed: a result
    nobody can see is not a result.
    """
    extra = [
        "--timeout",
        f"{timeout:g}",
        *forwarded_check_args(site, prometheus_url, prometheus_token_file, client_credentials),
    ]
    if rendered_dir is not None and deployment is None:
        extra += ["--rendered", str(rendered_dir)]
        # Labels for a check that wrote no report: the directory is gitops/rendered/<site>/<exp>/<name>.
        parts = rendered_dir.parts
        site = site or (parts[-3] if len(parts) >= 3 else None)
        label = "/".join(parts[-2:])
        run = run_check(None, endpoint, token_file=token_file, extra=extra, timeout=timeout + 60)
    elif deployment is not None and rendered_dir is None:
        label = deployment
        run = run_check(deployment, endpoint, token_file=token_file, extra=extra, timeout=timeout + 60)
    else:
        die("give DEPLOYMENT or --rendered DIR (one of them)")
    click.echo(run.stdout, nl=False)
    if run.stderr:
        click.echo(run.stderr, err=True, nl=False)
    report = run.report
    text = exposition(check_metrics(report, run.exit_code, run.started_at + run.duration, run.duration))
    _push(url, job, _grouping(report, label, site), text)
    err.print(f"sonic: pushed the result of {label} to {url}", markup=False)
    raise SystemExit(run.exit_code)


@pushgateway.command("push")
@click.argument("report_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@url_option
@job_option
@click.option(
    "--exit-code", type=int, required=True, help="Exit code of the sonic check that wrote the report."
)
@click.option("--deployment", help="EXPERIMENT/NAME (default: from the report).")
@site_option("Site label (default: from the report).")
@click.option("--duration", type=float, default=0.0, help="Seconds the check took.")
def push_report(
    report_file: Path,
    url: str,
    job: str,
    exit_code: int,
    deployment: str | None,
    site: str | None,
    duration: float,
) -> None:
    """Push REPORT_FILE (the output of `sonic check --format json`)."""
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        die(f"{report_file}: not a JSON report ({exc})", EXIT_INVALID)
    if not isinstance(report, dict):
        die(f"{report_file}: expected a JSON object", EXIT_INVALID)
    deployment = deployment or str(report.get("deployment") or "")
    if "/" not in deployment:
        die("the deployment (EXPERIMENT/NAME) is neither in the report nor given with --deployment")
    finished = report_file.stat().st_mtime if not duration else time.time()
    text = exposition(check_metrics(report, exit_code, finished, duration))
    _push(url, job, _grouping(report, deployment, site), text)
    click.echo(f"pushed {deployment} to {url}")
