"""``sonic rollout``: the steps of a rollout through Argo CD, one subcommand each.

\b
  sonic rollout target  --site S --deployment D     which Application, endpoint, directory
  sonic rollout commit  --source . --path DIR ...   publish rendered files to the GitOps branch
  sonic rollout wait    --application A --revision  until Synced and Healthy at (a commit containing) it
  sonic rollout verify  D --endpoint HOST:PORT      sonic check, report kept for revert
  sonic rollout revert  --commit SHA ...            undo the commit, push, fail with the report

Exit codes: 0 done; 1 the rollout failed (degraded, timed out, check failed, reverted);
2 environment error worth retrying (network, API server, lost push race).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, die, err, out
from pipelines.cli.options import (
    compose,
    deployment_argument,
    die_remote,
    dir_option,
    endpoint_option,
    file_option,
    forwarded_check_args,
    forwarded_check_options,
    load_tree_at,
    root_option,
    site_option,
    write_outputs,
)
from pipelines.config.model import parse_duration
from pipelines.config.names import GITOPS_BRANCH
from pipelines.ops import argocd_wait, git, rollout_target
from pipelines.ops.check_runner import run_check
from pipelines.ops.github import TokenError, read_token


@cli.group()
def rollout() -> None:
    """Roll a deployment out at a site through Argo CD, and back when its checks fail."""


def _git_token(token_file: Path | None) -> str | None:
    if token_file is None:
        return None
    try:
        return read_token(token_file)
    except TokenError as exc:
        die(str(exc))


_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:us|ms|s|m|h))+$|^[0-9]+(?:\.[0-9]+)?$")


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """``15m``, ``1m30s`` or plain seconds."""
    seconds = (
        parse_duration(float(value) if value.replace(".", "", 1).isdigit() else value)
        if _DURATION.match(value)
        else 0.0
    )
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: expected a duration such as 15m, 90s or 600")
    return seconds


#: The options every command that pushes to the GitOps branch takes.
with_remote = compose(
    click.option("--remote", required=True, help="Git URL of the repository holding the GitOps branch."),
    click.option("--branch", default=GITOPS_BRANCH, show_default=True, help="The branch Argo CD syncs from."),
    file_option("--token-file", help="File holding a token allowed to push (sent as an HTTP header)."),
    dir_option("--workdir", required=True, help="Empty directory for the branch's working copy."),
    click.option("--workflow", default="", help="Workflow name recorded in the commit message."),
)


@rollout.command()
@site_option("Site to roll out at.", required=True)
@click.option("--deployment", required=True, help="NAME or EXPERIMENT/NAME.")
@root_option()
@dir_option("--outputs", help="Write one file per value for Argo.")
def target(site: str, deployment: str, root: Path, outputs: Path | None) -> None:
    """Print the Argo CD Application, namespace, endpoint and rendered directory of a deployment."""
    _, tree = load_tree_at(root)
    try:
        t = rollout_target.target(tree, site, deployment)
    except rollout_target.TargetError as exc:
        die(str(exc), EXIT_INVALID)
    write_outputs(outputs, t.as_outputs())
    click.echo(json.dumps(t.as_outputs(), indent=2, sort_keys=True))


@rollout.command()
@dir_option(
    "--source",
    exists=True,
    default=Path("."),
    show_default=True,
    help="Repository checkout holding the freshly rendered files.",
)
@click.option(
    "--path", "paths", required=True, multiple=True, help="Repository-relative path to publish (repeatable)."
)
@site_option("Recorded in the commit message.", required=True)
@click.option("--deployment", required=True, help="Recorded in the commit message.")
@click.option("--source-revision", required=True, help="The reviewed commit the files were rendered from.")
@with_remote
@dir_option("--outputs", help="Write commit and changed for Argo.")
def commit(
    source: Path,
    paths: tuple[str, ...],
    site: str,
    deployment: str,
    source_revision: str,
    remote: str,
    branch: str,
    token_file: Path | None,
    workdir: Path,
    workflow: str,
    outputs: Path | None,
) -> None:
    """Make PATH on the GitOps branch equal to SOURCE's copy; commit as the bot and push.

    Nothing to change makes no commit (outputs changed=false and the branch head).
    """
    message = rollout_target.commit_message(site, deployment, source_revision, workflow)
    try:
        result = git.publish(source, paths, remote, branch, message, workdir, _git_token(token_file))
    except git.GitError as exc:
        die_remote(str(exc), transient=exc.transient)
    write_outputs(outputs, {"commit": result.commit, "changed": "true" if result.changed else "false"})
    if result.changed:
        out.print(f"pushed {result.commit[:12]} to {branch}: {', '.join(paths)}")
    else:
        out.print(f"{branch} already has these files at {result.commit[:12]}: nothing to commit")


@rollout.command()
@click.option("--application", required=True, help="Argo CD Application name.")
@click.option("--namespace", default="argocd", show_default=True, help="Namespace of Argo CD's Applications.")
@click.option("--revision", help="Commit the Application must have synced (default: any).")
@click.option(
    "--timeout", default="15m", show_default=True, callback=_duration, help="Give up after this long."
)
@click.option("--interval", default="10s", show_default=True, callback=_duration, help="Time between polls.")
@file_option("--kubeconfig", help="Default: in-cluster, then ~/.kube/config.")
@click.option("--context", "kube_context", help="kubeconfig context.")
@dir_option(
    "--checkout",
    exists=True,
    help="Working copy of the GitOps branch (the commit step's): a revision Argo CD reports counts "
    "as REVISION when it contains it (a later rollout pushed on top). Default: only REVISION itself.",
)
@click.option(
    "--branch", default=GITOPS_BRANCH, show_default=True, help="The GitOps branch, fetched into --checkout."
)
@file_option("--token-file", help="File holding a token that may read the repository (for --checkout).")
def wait(
    application: str,
    namespace: str,
    revision: str | None,
    timeout: float,
    interval: float,
    kubeconfig: Path | None,
    kube_context: str | None,
    checkout: Path | None,
    branch: str,
    token_file: Path | None,
) -> None:
    """Wait until APPLICATION is Synced and Healthy at REVISION; exit 1 if it degrades or times out.

    \b
    Every site's Applications follow one branch, so after a neighbour's rollout Argo CD reports
    the neighbour's later commit. With --checkout, any commit that contains REVISION counts
    (git merge-base --is-ancestor); without it, only REVISION itself.
    """
    if checkout is not None and revision is None:
        die("--checkout needs --revision (the commit the revisions Argo CD reports must contain)")
    try:
        api = argocd_wait.api_from_config(str(kubeconfig) if kubeconfig else None, kube_context)
    except argocd_wait.KubernetesAccessError as exc:
        die(str(exc))
    contains = (
        git.Descendants(checkout, branch, revision, _git_token(token_file))
        if checkout is not None and revision is not None
        else None
    )
    last = [""]

    def report(state: argocd_wait.AppState) -> None:
        line = state.describe()
        if line != last[0]:  # one line per change, not per poll
            err.print(f"{namespace}/{application}: {line}", markup=False)
            last[0] = line

    try:
        result = argocd_wait.wait_for_application(
            api,
            namespace,
            application,
            revision=revision,
            contains=contains,
            timeout=timeout,
            interval=interval,
            on_poll=report,
        )
    except argocd_wait.KubernetesAccessError as exc:
        die(str(exc))
    if result.ok:
        at = result.state.revision
        where = f" at {revision[:12]}" if revision else ""
        if revision and at and not at.startswith(revision) and not revision.startswith(at):
            where = f" at {at[:12]}, which contains {revision[:12]}"
        out.print(f"{application}: Synced and Healthy{where}")
        return
    why = {
        "degraded": "is Degraded",
        "failed": "sync operation failed",
        "timeout": f"did not become Synced and Healthy within {timeout:g}s",
    }[result.verdict]
    die(f"{application} {why}: {result.state.describe()}", EXIT_INVALID)


@rollout.command()
@deployment_argument
@endpoint_option("The deployment's gRPC endpoint.")
@site_option("Placement to check (needed when the deployment runs at several sites).")
@file_option("--report-file", required=True, help="Where to keep the JSON report.")
@forwarded_check_options(
    token_file_help="Passed to sonic check when the file exists (an optional Secret).",
    prometheus_token_file_help="Passed to sonic check when the file exists.",
    timeout_help="Seconds.",
)
def verify(
    deployment: str,
    endpoint: str,
    site: str | None,
    report_file: Path,
    token_file: Path | None,
    client_credentials: Path | None,
    prometheus_token_file: Path | None,
    prometheus_url: str | None,
    timeout: float,
) -> None:
    """Run `sonic check --format json` and keep its report in REPORT_FILE; exit with its exit code."""

    # The token files are optional Secrets: a missing one is not passed on rather than refused.
    def existing(path: Path | None) -> Path | None:
        return path if path is not None and path.is_file() else None

    # Likewise the client credentials: an optional Secret mounted as a directory may be empty.
    credentials = (
        client_credentials if client_credentials and (client_credentials / "token-url").is_file() else None
    )
    extra = forwarded_check_args(site, prometheus_url, existing(prometheus_token_file), credentials)
    run = run_check(deployment, endpoint, token_file=existing(token_file), extra=extra, timeout=timeout)
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(run.stdout or json.dumps({"error": run.stderr.strip()}), encoding="utf-8")
    click.echo(run.stdout, nl=False)
    if run.stderr:
        click.echo(run.stderr, err=True, nl=False)
    raise SystemExit(run.exit_code)


@rollout.command()
@click.option("--commit", "commit_sha", required=True, help="The rollout commit to undo.")
@with_remote
@file_option("--report-file", help="The check report to fail with.")
@click.option("--reason", default="", help="Why (default: from the report, else 'not Synced and Healthy').")
def revert(
    commit_sha: str,
    remote: str,
    branch: str,
    token_file: Path | None,
    workdir: Path,
    workflow: str,
    report_file: Path | None,
    reason: str,
) -> None:
    """Revert COMMIT on the GitOps branch, push, then exit 1 with the check report.

    Exits 1 even when the revert succeeds: the rollout it undoes has failed.
    """
    report_text = report_file.read_text(encoding="utf-8") if report_file and report_file.is_file() else ""
    if not reason:
        reason = _reason(report_text)
    message = rollout_target.revert_message(commit_sha, reason, workflow)
    try:
        new = git.revert(remote, branch, commit_sha, workdir, message, _git_token(token_file))
    except git.GitError as exc:
        die_remote(str(exc), transient=exc.transient)
    if report_text:
        click.echo(report_text.rstrip("\n"))
    die(f"rollout failed ({reason}); reverted {commit_sha[:12]} on {branch} with {new[:12]}", EXIT_INVALID)


def _reason(report_text: str) -> str:
    if not report_text:
        return "the Application did not become Synced and Healthy"
    try:
        report = json.loads(report_text)
    except json.JSONDecodeError:
        return "sonic check failed"
    failed = [c for c in report.get("checks", []) if isinstance(c, dict) and c.get("status") == "fail"]
    if failed:
        names = ", ".join(
            f"{c.get('check')}{' ' + str(c['target']) if c.get('target') else ''}" for c in failed[:3]
        )
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        return f"sonic check failed: {names}{more}"
    if "error" in report:
        return f"sonic check could not run: {str(report['error'])[:200]}"
    return "sonic check failed"
