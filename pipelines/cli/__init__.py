"""``sonic``: every pipeline step is one subcommand, the same locally and in Argo Workflows.

Exit codes: 0 success; 1 invalid input or a failed check; 2 usage or environment error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from pipelines.config import ConfigErrors, Tree, load_tree

EXIT_INVALID = 1
EXIT_USAGE = 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"sonic: {message}", markup=False)
    sys.exit(code)


def report_errors(exc: ConfigErrors, fmt: str) -> NoReturn:
    if fmt == "json":
        click.echo(json.dumps({"valid": False, "errors": [e.as_dict() for e in exc.errors]}, indent=2))
    else:
        for e in exc.errors:
            click.echo(str(e))
        click.echo(f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}", err=True)
    sys.exit(EXIT_INVALID)


def load_or_exit(root: Path, selection: set[Path] | None = None, fmt: str = "text") -> Tree:
    try:
        return load_tree(root, selection)
    except ConfigErrors as exc:
        report_errors(exc, fmt)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sonic-gitops")
def cli() -> None:
    """SONIC GitOps: inference-as-a-service deployments for HEP and astrophysics, as code.

    \b
    Typical flow:
      sonic validate                  check experiments/ and gitops/sites/
      sonic demo                      run the whole chain on this machine
    """


def main() -> None:
    """Console entry point: never shows a traceback for a failure it did not foresee either."""
    try:
        cli()
    except KeyboardInterrupt:
        die("interrupted", 130)
    except Exception as exc:  # a bug, not bad input: say so, and how to see details
        if os.environ.get("SONIC_DEBUG"):
            raise
        die(
            f"internal error: {type(exc).__name__}: {exc} (set SONIC_DEBUG=1 for a traceback, and please report it)"
        )


# Each subcommand lives in its own module and registers itself on ``cli`` when imported.
from pipelines.cli import build_models as _build_models  # noqa: E402,F401
from pipelines.cli import check as _check  # noqa: E402,F401
from pipelines.cli import demo as _demo  # noqa: E402,F401
from pipelines.cli import github as _github  # noqa: E402,F401
from pipelines.cli import local as _local  # noqa: E402,F401
from pipelines.cli import pipelines_cmd as _pipelines_cmd  # noqa: E402,F401
from pipelines.cli import pushgateway as _pushgateway  # noqa: E402,F401
from pipelines.cli import render as _render  # noqa: E402,F401
from pipelines.cli import rollout as _rollout  # noqa: E402,F401
from pipelines.cli import schema_docs as _schema_docs  # noqa: E402,F401
from pipelines.cli import validate as _validate  # noqa: E402,F401

if __name__ == "__main__":
    main()
