"""``sonic github``: check out a pull request, set its commit status, keep the bot's comment.

The steps of the ``pr-validation`` workflow; each works the same from a laptop with a token.
Exit codes: 0 done; 1 GitHub refused the request (4xx) or the input is wrong; 2 environment
error worth retrying (network, 5xx, rate limit, missing token).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import cast

import click

from pipelines.cli import EXIT_INVALID, cli, die, err, out
from pipelines.cli.options import die_remote, dir_option, file_option, write_outputs
from pipelines.config import find_root, layout
from pipelines.config.checked import check_tree
from pipelines.config.tree import LayoutError, dependents
from pipelines.ops import git, pr_summary
from pipelines.ops.github import (
    COMMENT_MARKER,
    DEFAULT_API,
    STATES,
    GitHub,
    GitHubError,
    State,
    TokenError,
    check_repository,
    read_token,
)

# Argo's {{workflow.status}} -> GitHub commit status state.
WORKFLOW_STATES: dict[str, State] = {
    "Succeeded": "success",
    "Failed": "failure",
    "Error": "error",
    "Running": "pending",
}

token_option = file_option("--token-file", help="File holding the GitHub token (default: $GITHUB_TOKEN).")
api_option = click.option(
    "--api-url",
    default=DEFAULT_API,
    show_default=True,
    help="GitHub REST API base URL (Enterprise: https://HOST/api/v3).",
)


def _repository(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_repository(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


repository_option = click.option(
    "--repository", required=True, metavar="OWNER/NAME", callback=_repository, help="The GitHub repository."
)


@cli.group()
def github() -> None:
    """GitHub steps of the pull-request pipeline: checkout, commit status, the bot's comment."""


def _token(token_file: Path | None, required: bool = True) -> str | None:
    try:
        return read_token(token_file)
    except TokenError as exc:
        if required or token_file is not None:
            die(str(exc))
        return None


@github.command()
@repository_option
@click.option("--ref", required=True, help="Commit SHA, branch or tag to check out.")
@click.option("--pr", "pull_request", type=click.IntRange(min=1), help="Fetch from this pull request's head.")
@click.option("--base-ref", help="Branch to diff against: writes base-sha, relevant and deployments outputs.")
@click.option(
    "--relevant",
    "prefixes",
    multiple=True,
    metavar="PREFIX",
    help="Path prefix whose changes need validation (repeatable; default: any change).",
)
@click.option(
    "--on-branch",
    metavar="BRANCH",
    help="Refuse (exit 1) unless the commit is on BRANCH (an ancestor of its head): what a rollout "
    "checks, so only merged commits reach the clusters.",
)
@dir_option("--dest", required=True, help="Empty directory.")
@click.option("--server", default="https://github.com", show_default=True, help="Git server URL.")
@dir_option(
    "--outputs",
    help="Directory to write one file per output (head, base-sha, relevant, deployments) for Argo.",
)
@token_option
@click.option(
    "--attempts",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Try this often when the failure is worth retrying (network, 5xx), waiting --retry-wait, "
    "then twice as long each time (up to a minute).",
)
@click.option(
    "--retry-wait", type=click.FloatRange(min=0), default=10.0, show_default=True, metavar="SECONDS"
)
def checkout(
    repository: str,
    ref: str,
    pull_request: int | None,
    base_ref: str | None,
    prefixes: tuple[str, ...],
    on_branch: str | None,
    dest: Path,
    server: str,
    outputs: Path | None,
    token_file: Path | None,
    attempts: int,
    retry_wait: float,
) -> None:
    """Clone REPOSITORY at REF into DEST; with --base-ref, also say what the change touches.

    The token (from --token-file or $GITHUB_TOKEN; optional for public repositories) is sent as
    an HTTP header, never written into the clone's configuration.

    \b
    Outputs with --base-ref:
      base-sha     merge base with the base branch (what `sonic validate --changed-against` takes)
      relevant     "true" when a changed path starts with one of the --relevant prefixes
      deployments  JSON list of EXPERIMENT/NAME whose validation the change affects
    """
    token = _token(token_file, required=False)
    url = f"{server.rstrip('/')}/{repository}.git"
    for attempt in range(1, attempts + 1):
        try:
            co = git.checkout(
                url, dest, ref, pull_request=pull_request, base_ref=base_ref, on_branch=on_branch, token=token
            )
            break
        except git.GitError as exc:
            if not exc.transient or attempt == attempts:
                die_remote(str(exc), transient=exc.transient)
            err.print(
                f"sonic: {exc} (attempt {attempt} of {attempts}, again in {retry_wait:g}s)", markup=False
            )
            time.sleep(retry_wait)
            retry_wait = min(retry_wait * 2, 60.0)
    values = {"head": co.head}
    if base_ref is not None:
        relevant = not prefixes or any(c.startswith(prefixes) for c in co.changed)
        values |= {
            "base-sha": co.base or "",
            "relevant": "true" if relevant else "false",
            "deployments": json.dumps(affected_deployments(dest, co.changed) if relevant else []),
        }
    write_outputs(outputs, values)
    summary = f"checked out {co.head[:12]}"
    if co.base:
        summary += f" ({len(co.changed)} files changed since {co.base[:12]})"
    out.print(summary)


def affected_deployments(root: Path, changed: tuple[str, ...]) -> list[str]:
    """EXPERIMENT/NAME of every deployment whose validation ``changed`` files affect."""
    try:
        root = find_root(root)
    except LayoutError:
        return []
    tree, _ = check_tree(root)  # problems are reported by `sonic validate`, the next step
    files = dependents(tree, {(root / c).resolve() for c in changed})
    return sorted(d.ref for d in tree.deployments if d.source.resolve() in files)


@github.command()
@repository_option
@click.option("--sha", required=True, help="Commit the status belongs to.")
@click.option("--state", type=click.Choice(STATES), help="Status to set.")
@click.option(
    "--workflow-status",
    metavar="PHASE",
    help="Argo's {{workflow.status}} instead of --state (Succeeded, Failed, Error).",
)
@click.option(
    "--context", default="sonic-gitops/pr-validation", show_default=True, help="Status name on GitHub."
)
@click.option("--description", default="", help="Short text (cut at 140 characters).")
@click.option("--target-url", default="", help="Link for 'Details' (empty: none).")
@api_option
@token_option
def status(
    repository: str,
    sha: str,
    state: str | None,
    workflow_status: str | None,
    context: str,
    description: str,
    target_url: str,
    api_url: str,
    token_file: Path | None,
) -> None:
    """Set a commit status on SHA (POST /repos/OWNER/NAME/statuses/SHA)."""
    if (state is None) == (workflow_status is None):
        die("give exactly one of --state and --workflow-status")
    if workflow_status is not None:
        state = WORKFLOW_STATES.get(workflow_status, "error")
        if not description:
            description = {
                "success": "validation passed",
                "failure": "validation failed: see the pull-request comment",
                "error": f"the validation workflow ended with {workflow_status}",
                "pending": "validation running",
            }[state]
    token = _token(token_file)
    assert token is not None and state is not None
    try:
        with GitHub(token, api_url) as gh:
            gh.set_status(
                repository,
                sha,
                cast(State, state),
                context=context,
                description=description,
                target_url=target_url or None,
            )
    except ValueError as exc:
        die(str(exc), EXIT_INVALID)
    except GitHubError as exc:
        die_remote(str(exc), transient=exc.transient)
    out.print(f"status {context} = {state} on {sha[:12]}")


@github.command()
@repository_option
@click.option("--pr", "pull_request", required=True, type=click.IntRange(min=1), help="Pull request number.")
@file_option("--body-file", exists=True, help="Post this Markdown.")
@click.option("--sha", default="", help="Commit that was validated (shown in the summary).")
@click.option("--workflow-status", default="", metavar="PHASE", help="Argo's {{workflow.status}}.")
@click.option("--failures", default="", metavar="JSON", help="Argo's {{workflow.failures}}.")
@click.option("--workflow", default="", help="Workflow name shown in the summary.")
@click.option("--details-url", default="", help="Link to the workflow run.")
@dir_option(
    "--checkout",
    "checkout_dir",
    help="The checked-out pull request, to summarise per site what changes.",
)
@click.option("--base-ref", default="main", show_default=True, help="Branch the pull request targets.")
@click.option(
    "--relevant", "prefixes", multiple=True, metavar="PREFIX", help="As for `sonic github checkout`."
)
@click.option(
    "--skip-if-irrelevant",
    is_flag=True,
    help="Post nothing when no relevant path changed, the workflow succeeded and the bot has not "
    "commented yet (a failed render check on such a pull request is still explained).",
)
@click.option("--author", help="Only update a marked comment written by this login.")
@api_option
@token_option
def comment(
    repository: str,
    pull_request: int,
    body_file: Path | None,
    sha: str,
    workflow_status: str,
    failures: str,
    workflow: str,
    details_url: str,
    checkout_dir: Path | None,
    base_ref: str,
    prefixes: tuple[str, ...],
    skip_if_irrelevant: bool,
    author: str | None,
    api_url: str,
    token_file: Path | None,
) -> None:
    """Create or update the bot's one comment on a pull request.

    With --body-file the file is posted as is; otherwise the summary is built from the workflow
    outcome and, with --checkout, the rendered manifests that change at each site.
    """
    relevant = True
    if body_file is not None:
        body = body_file.read_text(encoding="utf-8")
    else:
        changes: list[pr_summary.FileChange] = []
        head = sha
        if checkout_dir is not None and (checkout_dir / ".git").exists():
            changes, head, changed = _rendered_changes(checkout_dir, base_ref)
            relevant = not prefixes or any(c.startswith(prefixes) for c in changed)
            head = sha or head
        body = pr_summary.comment_body(
            outcome=workflow_status or "Succeeded",
            head=head,
            changes=changes,
            failures=pr_summary.parse_failures(failures),
            workflow=workflow,
            link=details_url,
            relevant=relevant,
        )
    token = _token(token_file)
    assert token is not None
    try:
        with GitHub(token, api_url) as gh:
            if skip_if_irrelevant and not relevant and (workflow_status or "Succeeded") == "Succeeded":
                existing = any(
                    COMMENT_MARKER in (c.get("body") or "") for c in gh.comments(repository, pull_request)
                )
                if not existing:
                    out.print("nothing relevant changed and no earlier comment: not commenting")
                    return
            result = gh.upsert_comment(repository, pull_request, body, author=author)
    except GitHubError as exc:
        die_remote(str(exc), transient=exc.transient)
    out.print(f"comment {result.action}: {result.url or result.id}")


def _rendered_changes(
    checkout_dir: Path, base_ref: str
) -> tuple[list[pr_summary.FileChange], str, list[str]]:
    """(rendered changes, head SHA, all changed paths) between the merge base and HEAD."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(checkout_dir), *args], capture_output=True, text=True, check=False, timeout=120
        )
        if proc.returncode != 0:
            die(f"git {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    head = git("rev-parse", "HEAD").strip()
    base = git("merge-base", f"refs/remotes/origin/{base_ref}", head).strip()
    status = git(
        "diff", "--name-status", "--no-renames", base, head, "--", layout.RENDERED_DIR, layout.ARGOCD_DIR
    )
    names = [n for n in git("diff", "--name-only", "--no-renames", base, head).splitlines() if n]
    return pr_summary.parse_name_status(status), head, names
