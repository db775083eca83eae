"""``sonic local up|status|down``: the rendered stack on this machine with real Triton, Envoy, Prometheus."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from rich.table import Table

from pipelines.cli import EXIT_INVALID, cli, die, err, out, report_errors
from pipelines.cli.options import (
    deployment_argument,
    file_option,
    format_option,
    load_tree_at,
    resolve_placement,
    root_option,
    seconds_option,
    site_option,
)
from pipelines.config import ConfigErrors, Placement, Tree

if TYPE_CHECKING:  # the local stack's modules load only when a local command runs
    from pipelines.local.stack import ComponentStatus
    from pipelines.local.state import StackState

_root_option = root_option("Repository holding the deployment (the stack's files go to ROOT/.sonic/run/).")
_site_option = site_option("Placement to run (needed when the deployment runs at several sites).")


@cli.group()
def local() -> None:
    """Run a deployment on this machine: Triton replicas, Envoy and Prometheus on 127.0.0.1.

    \b
    Envoy and Prometheus run the RENDERED configuration (the same generator as the cluster's
    manifests) with the addresses pointed at the local processes. Logs, configuration files and
    state.json live in ROOT/.sonic/run/<experiment>-<deployment>/.
    """


def _load(root: Path, deployment: str, site: str | None) -> tuple[Path, Tree, Placement]:
    root, tree = load_tree_at(root)
    return root, tree, resolve_placement(tree, deployment, site)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling, `kill`) tears down like Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@local.command()
@deployment_argument
@_site_option
@click.option(
    "--replicas", type=click.IntRange(1, 16), help="Triton replicas (default: the deployment's replicas)."
)
@click.option("--no-prometheus", is_flag=True, help="Do not start Prometheus even when it is installed.")
@file_option(
    "--jwks",
    exists=True,
    help="JWKS file replacing the deployment's remote key set (JWT deployments; no network here).",
)
@seconds_option("--timeout", default=120.0, help="How long each component may take to become ready.")
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C stops the stack.")
@_root_option
def up(
    deployment: str,
    site: str | None,
    replicas: int | None,
    no_prometheus: bool,
    jwks: Path | None,
    timeout: float,
    foreground: bool,
    root: Path,
) -> None:
    """Build the --local model snapshot and start the stack for DEPLOYMENT.

    Returns once every component is ready (Envoy sees every Triton healthy, Prometheus has
    scraped every target), printing the endpoint and the `sonic check` command to run. A
    failure or Ctrl-C while starting stops whatever had started.
    """
    from pipelines.local import stack

    root, tree, p = _load(root, deployment, site)
    jwks_text = jwks.read_text(encoding="utf-8") if jwks else None
    state: StackState | None = None
    try:
        with _sigterm_as_interrupt():
            state = _start(tree, p, root, replicas, not no_prometheus, jwks_text, timeout)
            _print_summary(state, stack.status(state), root, p, replicas)
            if not foreground:
                out.print(f"stop it:   sonic local down {state.deployment}{_root_opt(root)}", markup=False)
                return
            out.print("running in the foreground: Ctrl-C stops the stack", markup=False)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        if state is None:
            raise  # interrupted while starting: `stack.up` has already stopped what it started
    finally:
        # Attached: any way out (Ctrl-C, SIGTERM, an error) stops the stack.
        if foreground and state is not None:
            stack.down(state)
            err.print("sonic: stack stopped", markup=False)


def _start(
    tree: Tree,
    p: Placement,
    root: Path,
    replicas: int | None,
    with_prometheus: bool,
    jwks: str | None,
    timeout: float,
) -> StackState:
    """``stack.up`` with its failures turned into messages and exit codes."""
    from pipelines.local import stack
    from pipelines.local.envoy import EnvoyMissing
    from pipelines.local.triton import TritonError
    from pipelines.modelrepo.build import UsageError

    try:
        state: StackState = stack.up(
            tree,
            p,
            root=root,
            replicas=replicas,
            with_prometheus=with_prometheus,
            jwks=jwks,
            timeout=timeout,
            say=lambda msg: err.print(f"sonic: {msg}", markup=False),
        )
    except ConfigErrors as exc:
        report_errors(exc, "text")
    except (UsageError, EnvoyMissing, TritonError, ValueError, stack.AlreadyRunning) as exc:
        die(str(exc))  # a usage or environment problem (TritonError: not installed)
    except stack.StackError as exc:
        die(str(exc), EXIT_INVALID)
    return state


def local_differences(p: Placement, replicas: int | None) -> list[str]:
    """How the local stack differs from the deployment at its site, in words a newcomer reads once."""
    from pipelines.local.stack import default_replicas

    notes = []
    gpu = p.triton.gpu
    if gpu is not None:
        notes.append(
            f"at {p.site} each replica gets {gpu.count} {gpu.gpu_class} GPU(s); here Triton runs on this "
            "machine's CPU (GPU instance groups run as CPU instances), so latencies are not the cluster's"
        )
    a = p.autoscaling
    if a is not None and replicas is None:
        notes.append(
            f"at {p.site} KEDA scales {a.min}..{a.max} replicas on {a.metric}; here nothing scales: "
            f"{default_replicas(p)} replica(s), autoscaling.min (at least one; --replicas N to change)"
        )
    return notes


def _root_opt(root: Path) -> str:
    return "" if root.resolve() == Path.cwd().resolve() else f" --root {root}"


def _print_summary(
    state: StackState, components: list[ComponentStatus], root: Path, p: Placement, replicas: int | None
) -> None:
    _print_status(state, components)
    for note in state.skipped:
        out.print(f"skipped: {note}", markup=False)
    for note in local_differences(p, replicas):
        out.print(f"differs:  {note}", markup=False)
    # Without a local Prometheus, the check must not fall back to the site's (a cluster's) Prometheus.
    prom = f" --prometheus {state.prometheus_url}" if state.prometheus_url else " --no-prometheus"
    out.print(
        f"check it:  sonic check --endpoint {state.endpoint} {state.deployment}{prom}{_root_opt(root)}",
        markup=False,
    )


@local.command()
@deployment_argument
@_site_option
@format_option()
@_root_option
def status(deployment: str, site: str | None, fmt: str, root: Path) -> None:
    """Show each process of DEPLOYMENT's local stack, its ports and health.

    Exit codes: 0 everything runs; 1 a process has stopped; 2 no stack.
    """
    from pipelines.local import stack
    from pipelines.local.state import StateError

    root, _, p = _load(root, deployment, site)
    try:
        state = stack.find(root, p)
    except StateError as exc:
        die(str(exc))
    components = stack.status(state)
    if fmt == "json":
        body = json.loads(state.to_json())
        body["components"] = [c.__dict__ for c in components]
        click.echo(json.dumps(body, indent=2))
    else:
        _print_status(state, components)
    sys.exit(0 if all(c.running for c in components) else EXIT_INVALID)


@local.command()
@deployment_argument
@_site_option
@_root_option
def down(deployment: str, site: str | None, root: Path) -> None:
    """Stop DEPLOYMENT's local stack: Envoy, the Tritons, Prometheus; remove shared memory.

    Logs and configuration files stay in the run directory. Nothing running is not an error.
    """
    from pipelines.local import stack
    from pipelines.local.state import StateError

    root, _, p = _load(root, deployment, site)
    try:
        state = stack.find(root, p)
    except StateError as exc:
        out.print(f"nothing to stop: {exc}", markup=False)
        return
    for line in stack.down(state):
        out.print(f"stopped {line}", markup=False)
    out.print(f"logs kept in {state.run_dir}", markup=False)


def _print_status(state: StackState, components: list[ComponentStatus]) -> None:
    table = Table(title=f"local stack of {state.deployment} (site {state.site})", title_justify="left")
    for col in ("component", "pid", "state", "detail"):
        table.add_column(col)
    for c in components:
        table.add_row(c.name, str(c.pid), "[green]running" if c.running else "[bold red]stopped", c.detail)
    out.print(table)
    out.print(f"endpoint (gRPC, through Envoy): {state.endpoint}", markup=False)
    if state.prometheus_url:
        out.print(f"Prometheus: {state.prometheus_url}", markup=False)
    out.print(f"run directory (logs, configs): {state.run_dir}", markup=False)
