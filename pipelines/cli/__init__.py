"""``sonic``: every pipeline step is one subcommand, the same locally and in Argo Workflows.

Exit codes: 0 success; 1 invalid input or a failed check; 2 usage or environment error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console

if TYPE_CHECKING:  # the configuration layer (jsonschema, pydantic) loads with the first command
    from pipelines.config import ConfigErrors, Tree

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
    from pipelines.config import ConfigErrors, load_tree

    try:
        return load_tree(root, selection)
    except ConfigErrors as exc:
        report_errors(exc, fmt)


# Each subcommand lives in its own module (pipelines/cli/<module>.py) and registers itself on
# ``cli`` when imported. Modules are imported only when their command is used, so that
# `sonic validate` does not pay for importing the Kubernetes client, Hera or tritonclient.
COMMAND_MODULES: dict[str, str] = {
    "build-models": "build_models",
    "check": "check",
    "demo": "demo",
    "diff": "render",
    "github": "github",
    "import": "import_cmd",
    "local": "local",
    "owners": "owners",
    "pipelines": "pipelines_cmd",
    "pushgateway": "pushgateway",
    "render": "render",
    "rollout": "rollout",
    "schema-docs": "schema_docs",
    "site": "site",
    "validate": "validate",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"pipelines.cli.{COMMAND_MODULES[cmd_name]}")
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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
        # Not click's standalone mode: it would turn Ctrl-C into "Aborted!" with exit code 1.
        code = cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors: click's message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        die("interrupted", 130)
    except Exception as exc:  # a bug, not bad input: say so, and how to see details
        if os.environ.get("SONIC_DEBUG"):
            raise
        die(
            f"internal error: {type(exc).__name__}: {exc} (set SONIC_DEBUG=1 for a traceback, and please report it)"
        )
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
