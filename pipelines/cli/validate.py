"""``sonic validate``: schemas and cross-file rules, every error at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from pipelines.cli import cli, die, load_or_exit
from pipelines.config import LayoutError, Tree, expand, find_root
from pipelines.config.tree import check_tree, dependents


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints one object with every error (file, line, column, path, message).",
)
@click.option(
    "--changed-against",
    "base",
    metavar="GIT_REF",
    help="Validate only what differs from GIT_REF (a pull request's base) and what depends on it.",
)
def validate(paths: tuple[Path, ...], fmt: str, base: str | None) -> None:
    """Check configuration files against the schemas and the cross-file rules.

    PATHS are files or folders (default: experiments and gitops/sites in the current
    repository). Every problem is reported at once as FILE:LINE:COL: FIELD: MESSAGE.
    """
    try:
        root = find_root(paths[0] if paths else Path.cwd())
        given = list(paths) or [p for p in (root / "experiments", root / "gitops" / "sites") if p.exists()]
        selection = expand(root, given)
    except LayoutError as exc:
        die(str(exc))
    if base is not None:
        changed = changed_files(root, base)
        tree_ctx = _context(root)
        selection = selection & dependents(tree_ctx, changed) if paths else dependents(tree_ctx, changed)
    tree = load_or_exit(root, selection, fmt)
    n_dep = sum(1 for d in tree.deployments if d.source.resolve() in selection)
    summary = {"valid": True, "files": len(selection), "deployments": n_dep}
    if fmt == "json":
        click.echo(json.dumps({**summary, "errors": []}, indent=2))
    else:
        click.echo(f"ok: {len(selection)} files valid ({n_dep} deployments)")


def _context(root: Path) -> Tree:
    tree, _ = check_tree(root)
    return tree


def changed_files(root: Path, base: str) -> set[Path]:
    """Files that differ between ``base`` and the working tree (committed, staged, unstaged or new)."""

    def git(*args: str) -> list[str]:
        try:
            proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        except FileNotFoundError:
            die("git is not installed")
        except subprocess.CalledProcessError as exc:
            die(f"git {' '.join(args)} failed: {exc.stderr.strip()}")
        return [line for line in proc.stdout.splitlines() if line]

    top = Path(git("rev-parse", "--show-toplevel")[0])
    names = git("diff", "--name-only", "--no-renames", base) + git(
        "ls-files", "--others", "--exclude-standard"
    )
    return {(top / n).resolve() for n in names}
