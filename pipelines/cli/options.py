"""What several ``sonic`` subcommands share: their common options, and the steps that turn them into objects.

One definition per option keeps its name, type and default the same in every command; the help
text stays with each command, because "the repository to render" and "the repository to check"
tell the reader different things. Only click and the configuration model are imported here, both
already loaded by ``pipelines.cli``, so using this module costs a lazily loaded subcommand nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pipelines.cli import EXIT_INVALID, EXIT_USAGE, die, load_or_exit
from pipelines.config import Deployment, LayoutError, Placement, Tree, find_root

F = TypeVar("F", bound=Callable[..., Any])


# --- options ---------------------------------------------------------------------------------------


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying ``decorators`` as if stacked in this order (options keep their --help order)."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def file_option(*decls: str, exists: bool = False, **attrs: Any) -> Callable[[F], F]:
    """An option naming a file (not a folder), passed on as a :class:`~pathlib.Path`."""
    return click.option(*decls, type=click.Path(path_type=Path, dir_okay=False, exists=exists), **attrs)


def dir_option(*decls: str, exists: bool = False, **attrs: Any) -> Callable[[F], F]:
    """An option naming a folder (not a file), passed on as a :class:`~pathlib.Path`."""
    return click.option(*decls, type=click.Path(path_type=Path, file_okay=False, exists=exists), **attrs)


def root_option(help: str | None = None, *, exists: bool = False) -> Callable[[F], F]:
    """``--root`` (default: the working directory): any folder inside the repository to work on.

    Commands resolve it with :func:`find_root_or_die`, so a sub-folder of the repository works too.
    """
    return dir_option("--root", exists=exists, default=Path("."), show_default=True, help=help)


def format_option(help: str | None = None) -> Callable[[F], F]:
    """``--format text|json`` (parameter ``fmt``): json where a machine reads the output."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help=help
    )


def site_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """``--site``: a site name; for a DEPLOYMENT argument, see :func:`resolve_placement`."""
    return click.option("--site", required=required, help=help)


def endpoint_option(help: str) -> Callable[[F], F]:
    """``--endpoint HOST:PORT`` (required): a deployment's gRPC endpoint, its Envoy.

    ``grpcs://HOST:PORT`` is the same over TLS (an ingress), see :class:`pipelines.checks.Endpoint`.
    """
    return click.option("--endpoint", required=True, metavar="[grpcs://]HOST:PORT", help=help)


def prometheus_option(help: str) -> Callable[[F], F]:
    """``--prometheus URL`` (parameter ``prometheus_url``): the Prometheus `sonic check` asks."""
    return click.option("--prometheus", "prometheus_url", metavar="URL", help=help)


def seconds_option(
    *decls: str, help: str, default: float | None = None, minimum: float = 1, metavar: str | None = "SECONDS"
) -> Callable[[F], F]:
    """A duration in seconds, at least ``minimum``; its default shown in --help when it has one."""
    attrs: dict[str, Any] = {"default": default, "show_default": True} if default is not None else {}
    return click.option(*decls, type=click.FloatRange(min=minimum), metavar=metavar, help=help, **attrs)


def client_credentials_option(help: str) -> Callable[[F], F]:
    """``--client-credentials DIR``: OAuth2 client credentials to get a JWT with at check time."""
    return dir_option("--client-credentials", "client_credentials", metavar="DIR", help=help)


def forwarded_check_options(
    *, token_file_help: str, prometheus_token_file_help: str, timeout_help: str
) -> Callable[[F], F]:
    """--token-file, --client-credentials, --prometheus-token-file, --prometheus and --timeout of a
    command that runs `sonic check`.

    Pass them on with :func:`forwarded_check_args` (the token file goes to ``run_check`` itself).
    """
    return compose(
        file_option("--token-file", help=token_file_help),
        client_credentials_option("Passed to sonic check (a JWT is requested when the check runs)."),
        file_option("--prometheus-token-file", help=prometheus_token_file_help),
        prometheus_option("Passed to sonic check (default: the site's)."),
        seconds_option("--timeout", default=900.0, metavar=None, help=timeout_help),
    )


#: DEPLOYMENT: a deployment's name or EXPERIMENT/NAME (build-models also takes its file).
deployment_argument = click.argument("deployment")


# --- what the options name -------------------------------------------------------------------------


def find_root_or_die(path: Path) -> Path:
    """The root of the configuration tree holding ``path``; exits 2 when ``path`` is outside any."""
    try:
        return find_root(path)
    except LayoutError as exc:
        die(str(exc))


def load_tree_at(path: Path, fmt: str = "text") -> tuple[Path, Tree]:
    """The root of the tree holding ``path`` and the tree; exits 2 outside a tree, 1 on invalid configuration."""
    root = find_root_or_die(path)
    return root, load_or_exit(root, fmt=fmt)


def deployment_or_die(tree: Tree, name: str) -> Deployment:
    """The deployment called ``name`` (or EXPERIMENT/NAME); exits 2 naming the known ones otherwise."""
    try:
        return tree.deployment(name)
    except KeyError as exc:
        die(str(exc.args[0]))


def resolve_placement(tree: Tree, deployment: str, site: str | None) -> Placement:
    """``deployment`` at ``site`` (or at its only site); exits 2 naming the choices otherwise."""
    d = deployment_or_die(tree, deployment)
    sites = [x.site for x in d.placements]
    if site is None:
        if len(sites) != 1:
            die(f"{d.ref} runs at several sites ({', '.join(sites)}): choose one with --site")
        return d.placements[0]
    p = d.at(site)
    if p is None:
        die(f"{d.ref} is not placed at site {site!r} (sites: {', '.join(sites)})")
    return p


def forwarded_check_args(
    site: str | None,
    prometheus_url: str | None,
    prometheus_token_file: Path | None,
    client_credentials: Path | None = None,
) -> list[str]:
    """The `sonic check` arguments for the options a wrapping command passes on (None: not given)."""
    args = ["--site", site] if site else []
    if client_credentials is not None:
        args += ["--client-credentials", str(client_credentials)]
    if prometheus_url:
        args += ["--prometheus", prometheus_url]
    if prometheus_token_file is not None:
        args += ["--prometheus-token-file", str(prometheus_token_file)]
    return args


def write_outputs(directory: Path | None, values: Mapping[str, str]) -> None:
    """One file per value in ``directory`` (Argo reads step outputs from files); nothing when None."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (directory / name).write_text(value, encoding="utf-8")


def die_remote(message: str, *, transient: bool) -> NoReturn:
    """Exit for a failed remote call: 2 when worth retrying (network, 5xx, a lost push race), else 1."""
    die(message, EXIT_USAGE if transient else EXIT_INVALID)
