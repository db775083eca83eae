"""``sonic validate``: schemas and cross-file rules, every error at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, die
from pipelines.cli.options import format_option
from pipelines.config import ConfigError, LayoutError, expand, find_root, layout
from pipelines.config.checked import check_tree
from pipelines.config.errors import display_path
from pipelines.config.tree import Tree, classify, dependents, relevant


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@format_option(
    "json prints one object: valid, files, deployments, checked (file list), errors and warnings "
    "(each: file, line, column, path, message)."
)
@click.option(
    "--changed-against",
    "base",
    metavar="GIT_REF",
    help="Validate only what differs from GIT_REF (a pull request's base) and what depends on it: "
    "a changed site re-checks every deployment placed there, a changed experiment folder all its "
    "deployments.",
)
def validate(paths: tuple[Path, ...], fmt: str, base: str | None) -> None:
    """Check configuration files against the schemas and the cross-file rules.

    PATHS are files or folders (default: experiments and gitops/sites in the current
    repository). Every file of the tree is read, because rules such as GPU quotas span files,
    but only problems in the selected files (and in the sites and experiments they use) are
    reported, each as FILE:LINE:COL: FIELD: MESSAGE.

    \b
    Exit codes: 0 valid, 1 invalid configuration, 2 usage error (a path outside the
    configuration tree, a missing path, a git failure).

    \b
    Examples:
      sonic validate                                  the whole tree
      sonic validate experiments/cms                  one experiment
      sonic validate --changed-against origin/main    what a pull request touches
    """
    try:
        root = find_root(paths[0] if paths else Path.cwd())
        given = list(paths) or [
            p for p in (root / layout.EXPERIMENTS_DIR, root / layout.SITES_DIR) if p.exists()
        ]
        selection = expand(root, given)
    except LayoutError as exc:
        die(str(exc))
    changed = changed_files(root, base) if base is not None else None
    tree, errors = check_tree(root)  # one pass: the changed-file expansion reuses this tree
    if changed is not None:
        affected = dependents(tree, changed)
        selection = selection & affected if paths else affected
    keep = relevant(tree, selection)
    errors = [e for e in errors if Path(e.location.file).resolve() in keep]
    warnings = [w for w in _warnings(tree) if Path(w.location.file).resolve() in keep]
    _report(tree, selection, errors, fmt, warnings)


def _warnings(tree: Tree) -> list[ConfigError]:
    """What validation cannot decide but a person should know (an image the ONNX Runtime table lacks)."""
    from pipelines.config.modelfiles import onnx_runtime_findings

    return sorted(set(onnx_runtime_findings(tree).warnings))


def _echo_warnings(warnings: list[ConfigError]) -> None:
    for w in warnings:
        click.echo(f"{w.location}: {w.path}: warning: {w.message}", err=True)


def _report(
    tree: Tree,
    selection: set[Path],
    errors: list[ConfigError],
    fmt: str,
    warnings: list[ConfigError] | None = None,
) -> None:
    warnings = warnings or []
    checked = sorted(display_path(p) for p in selection)
    n_dep = sum(1 for p in selection if classify(tree.root, p) == "deployment")
    errors = sorted(set(errors))
    if fmt == "json":
        body = {
            "valid": not errors,
            "files": len(checked),
            "deployments": n_dep,
            "checked": checked,
            "errors": [e.as_dict() for e in errors],
            "warnings": [w.as_dict() for w in warnings],
        }
        click.echo(json.dumps(body, indent=2))
    elif errors:
        _echo_warnings(warnings)
        for e in errors:
            click.echo(str(e))
        click.echo(
            f"{len(errors)} error{'s' if len(errors) != 1 else ''} in {len(checked)} files checked", err=True
        )
    else:
        _echo_warnings(warnings)
        click.echo(f"ok: {len(checked)} files valid ({n_dep} deployments)")
    if errors:
        sys.exit(EXIT_INVALID)


def changed_files(root: Path, base: str) -> set[Path]:
    """Files that differ between ``base`` and the working tree (committed, staged, unstaged or new)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            die("git is not installed")
        except subprocess.TimeoutExpired:
            die(f"git {' '.join(args)} did not finish within 120 s")

    def names(*args: str) -> list[str]:
        proc = git(*args)
        if proc.returncode != 0:
            die(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return [n for n in proc.stdout.split("\0") if n]  # -z: no quoting of unusual file names

    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        die(f"--changed-against needs a git repository: {top.stderr.strip()}")
    if git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").returncode != 0:
        die(f"--changed-against: {base!r} is not a commit, branch or tag of this repository")
    # Both lists are relative to the top of the repository, even when the tree is a sub-folder.
    changed = names("diff", "-z", "--name-only", "--no-renames", base, "--") + names(
        "ls-files", "-z", "--others", "--exclude-standard", "--full-name"
    )
    return {(Path(top.stdout.strip()) / n).resolve() for n in changed}
