"""``sonic owners check``: a pull request changes the files of one owner, and what is generated from them.

The rules are in :mod:`pipelines.config.ownership`; ``.github/CODEOWNERS`` (written by
``sonic render``) asks GitHub for the same owners' reviews.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, out, report_errors
from pipelines.cli.options import find_root_or_die, format_option, root_option
from pipelines.cli.validate import changed_files
from pipelines.config import ConfigErrors
from pipelines.config.checked import check_tree
from pipelines.config.ownership import HandlesOf, Owner, OwnershipReport, check_paths, describe, handles
from pipelines.config.repository import load_repository

SPLIT = (
    "a pull request may change one experiment's files, one site's file, or the infrastructure, with the "
    "files `sonic render` generates from them: split it into one pull request per owner "
    "(the pull request's author can; docs/security.md, Ownership)"
)


@cli.group()
def owners() -> None:
    """Who owns which files, and whether a change stays within one owner (docs/security.md, Ownership)."""


@owners.command("check")
@click.option(
    "--against",
    "base",
    required=True,
    metavar="GIT_REF",
    help="Compare the working tree with GIT_REF (a pull request's base) and check the changed paths.",
)
@format_option("json prints one object: ok, owner, files (path, owner, handles, problem).")
@root_option("Repository to check.")
def check(base: str, fmt: str, root: Path) -> None:
    """Fail when the changes since GIT_REF mix owners.

    Owners: each experiment (experiments/<name>/, its `owners`), each site (gitops/sites/<name>.yaml,
    its `admins`), and the platform team (everything else; gitops/repository.yaml: platformTeam).
    Generated files (gitops/rendered, gitops/argocd, .github/CODEOWNERS) go with the change they
    are generated from: gitops/rendered/<site>/<experiment>/ with that experiment or site, and so on.

    \b
    Exit codes: 0 one owner, 1 mixed owners or a generated file that belongs to someone else,
    2 usage error (not a git repository, unknown GIT_REF).
    """
    root = find_root_or_die(root)
    try:
        repo = load_repository(root)
    except ConfigErrors as exc:
        report_errors(exc, fmt)
    top = root.resolve()
    changed = sorted(
        p.relative_to(top).as_posix() for p in changed_files(root, base) if p.is_relative_to(top)
    )
    tree, _ = check_tree(root)  # invalid files leave their owners unknown; `sonic validate` reports them
    report = check_paths(changed)
    of = handles(tree, repo.platform_team)
    if fmt == "json":
        click.echo(json.dumps(_as_dict(report, of), indent=2))
    else:
        _print(report, of, len(changed))
    if not report.ok:
        sys.exit(EXIT_INVALID)


def _as_dict(report: OwnershipReport, of: HandlesOf) -> dict[str, object]:
    files: list[dict[str, object]] = []
    for owner, paths in report.sources.items():
        for path in paths:
            problem = SPLIT if report.mixed else None
            files.append({"path": path, "owner": str(owner), "handles": list(of(owner)), "problem": problem})
    for path, allowed in report.strays.items():
        files.append(
            {
                "path": path,
                "owner": _ordered(allowed),
                "handles": sorted({h for o in allowed for h in of(o)}),
                "problem": _stray_message(report, allowed),
            }
        )
    return {"ok": report.ok, "owner": str(report.owner), "files": sorted(files, key=lambda f: str(f["path"]))}


def _ordered(owners: set[Owner]) -> str:
    """``experiment 'atlas' or site 'nautilus' or the platform team``: experiments, sites, then the platform."""
    rank = {"experiment": 0, "site": 1, "platform": 2}
    return " or ".join(str(o) for o in sorted(owners, key=lambda o: (rank[o.kind], o.name)))


def _stray_message(report: OwnershipReport, allowed: set[Owner]) -> str:
    return (
        f"generated from files of {_ordered(allowed)} (`sonic render`), which this "
        f"pull request of {report.owner} does not change; revert it, or change it in a pull request of its owner"
    )


def _print(report: OwnershipReport, of: HandlesOf, n: int) -> None:
    if report.mixed:
        for owner, paths in report.sources.items():
            for path in paths:
                click.echo(f"{path}: belongs to {describe(owner, of)}")
        mixed = ", ".join(str(o) for o in report.sources)
        click.echo(
            f"sonic: this change mixes the files of {len(report.sources)} owners ({mixed}); {SPLIT}", err=True
        )
        return
    for path, allowed in report.strays.items():
        click.echo(f"{path}: {_stray_message(report, allowed)}")
    if report.strays:
        click.echo(f"sonic: {len(report.strays)} generated file(s) belong to another owner", err=True)
        return
    out.print(f"ok: {n} changed file(s), all of {describe(report.owner, of)}", markup=False)
