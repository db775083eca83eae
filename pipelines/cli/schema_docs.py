"""``sonic schema-docs``: write (or check) the configuration reference generated from the schemas."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, die
from pipelines.config.schemadoc import render_reference

DEFAULT_OUTPUT = (
    Path("docs") / "config-reference.md"
)  # relative to the repository root (the working directory)


@cli.command("schema-docs")
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_OUTPUT,
    show_default="docs/config-reference.md",
    help="Where the reference is written.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 with a diff if the file is stale.")
def schema_docs(output: Path, check: bool) -> None:
    """Generate the configuration reference (Markdown) from the schemas' descriptions.

    Run it after changing anything in schemas/; CI runs it with --check.
    """
    text = render_reference()
    try:
        current = output.read_text(encoding="utf-8") if output.exists() else None
    except OSError as exc:
        die(f"cannot read {output}: {exc.strerror or exc}")
    if check:
        if current == text:
            click.echo(f"ok: {output} is up to date")
            return
        diff = difflib.unified_diff(
            (current or "").splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{output} (committed)",
            tofile=f"{output} (from schemas)",
        )
        click.echo("".join(diff), nl=False)
        click.echo(f"{output} is out of date: run `sonic schema-docs`", err=True)
        sys.exit(EXIT_INVALID)
    if current == text:
        click.echo(f"unchanged: {output}")
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        die(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"wrote {output}")
