"""``sonic demo``: the whole chain on this machine, step by step.

validate -> build (--local) -> render -> local up -> check -> report -> down. Each step says
what it did, what it skipped and why; the stack always comes down, even on Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import NoReturn

import click
from rich.table import Table
from rich.text import Text

from pipelines.cli import EXIT_INVALID, EXIT_USAGE, cli, load_or_exit, out
from pipelines.cli.options import find_root_or_die, resolve_placement, root_option
from pipelines.config import ConfigErrors, Placement, Tree, layout

DEMO_DEPLOYMENT = "cms/minimal"


@dataclass(frozen=True)
class Step:
    name: str
    status: str  # passed, failed, skipped
    detail: str
    seconds: float


@cli.command()
@root_option("Repository to run on.")
@click.option("--deployment", default=DEMO_DEPLOYMENT, show_default=True, help="The deployment to run.")
@click.option("--replicas", type=click.IntRange(1, 8), default=2, show_default=True, help="Triton replicas.")
@click.option(
    "--keep", is_flag=True, help="Leave the local stack running at the end (stop it with `sonic local down`)."
)
@click.option("--no-prometheus", is_flag=True, help="Run without Prometheus, as on a machine that lacks it.")
def demo(root: Path, deployment: str, replicas: int, keep: bool, no_prometheus: bool) -> None:
    """Run the whole chain on this machine with real Triton, Envoy and Prometheus processes.

    \b
    1. validate  every experiment, deployment and site file (schemas, cross-file rules)
    2. build     the deployment's model repository from verified artifacts, plus its CPU variant
    3. render    the deployment's Kubernetes manifests (in memory; written to the run directory)
    4. local up  Triton replicas, Envoy with the rendered config, Prometheus with the rendered rules
    5. check     real inference requests through Envoy: the checks `sonic check` runs after a sync
    6. report    what passed, failed and was skipped, and why
    7. down      stop everything, remove shared memory

    The stack comes down after the report even when a check failed (or on Ctrl-C), unless --keep.
    Exit codes: 0 every step passed; 1 a step or check failed; 2 environment error.
    """
    root = find_root_or_die(root)
    steps: list[Step] = []

    out.rule("[bold]1. validate")
    t0 = time.perf_counter()
    tree = load_or_exit(root)
    out.print(
        f"{len(tree.sites)} sites, {len(tree.experiments)} experiments, {len(tree.deployments)} deployments: all valid"
    )
    print_site_summary(tree)
    p = resolve_placement(tree, deployment, None)
    steps.append(
        Step("validate", "passed", f"{len(tree.deployments)} deployments valid", time.perf_counter() - t0)
    )

    out.rule(f"[bold]2. build {p.ref} (--local)")
    repository = _build(tree, p, root, steps)

    out.rule("[bold]3. render")
    _render(tree, p, root, steps)

    out.rule(f"[bold]4. local up ({replicas} Triton replicas, Envoy, Prometheus)")
    _run_stack(tree, p, root, repository, replicas, keep, not no_prometheus, steps)
    ok = all(s.status != "failed" for s in steps)
    out.print(Text("demo PASSED" if ok else "demo FAILED", style="bold green" if ok else "bold red"))
    sys.exit(0 if ok else EXIT_INVALID)


def _build(tree: Tree, p: Placement, root: Path, steps: list[Step]) -> Path:
    from pipelines.local.stack import StackError, build_local_snapshot
    from pipelines.modelrepo.build import UsageError

    t0 = time.perf_counter()
    try:
        built = build_local_snapshot(tree, p, root / ".sonic" / "models")
    except ConfigErrors as exc:
        for e in exc.errors:
            out.print(str(e), markup=False)
        _fail(steps, "build", f"{len(exc.errors)} problem(s) with the models", t0)
    except (StackError, UsageError) as exc:
        _fail(steps, "build", str(exc), t0)
    out.print(f"models verified (sha256) and published; CPU variant: {built.repository}", markup=False)
    notes = [f"skipped model {m}: {why}" for m, why in built.skipped]
    for note in notes:
        out.print(note, markup=False)
    steps.append(Step("build", "passed", "; ".join(["snapshot published", *notes]), time.perf_counter() - t0))
    return built.repository


def _render(tree: Tree, p: Placement, root: Path, steps: list[Step]) -> None:
    t0 = time.perf_counter()
    try:
        from pipelines.render import RenderError, read_inputs, render_tree
    except ImportError as exc:
        out.print(f"skipped: the renderer is not available ({exc})", markup=False)
        steps.append(Step("render", "skipped", f"renderer not available ({exc})", time.perf_counter() - t0))
        return
    ref = p.ref
    try:
        files = render_tree(tree, read_inputs(tree), only={ref})
    except RenderError as exc:
        out.print(f"render failed: {exc}", markup=False)
        steps.append(Step("render", "failed", str(exc), time.perf_counter() - t0))
        return
    from pipelines.local.state import run_dir

    # Written beside the local stack, never over gitops/rendered (that is `sonic render`'s job).
    dest = run_dir(root, p).parent / f"{p.experiment}-{p.name}-rendered"
    # Kubernetes manifests only: application.json feeds the ApplicationSet's generator.
    mine = {
        path: text
        for path, text in files.items()
        if fnmatch(path, f"{layout.rendered_dir('*', p.experiment, p.name)}/*") and path.endswith(".yaml")
    }
    for path, text in mine.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for path in sorted(mine):
        out.print(f"  {path}", markup=False)
    out.print(f"{len(mine)} manifest files for {ref} at site {p.site} (copies in {dest})", markup=False)
    steps.append(Step("render", "passed", f"{len(mine)} manifest files", time.perf_counter() - t0))


def _run_stack(
    tree: Tree,
    p: Placement,
    root: Path,
    repository: Path,
    replicas: int,
    keep: bool,
    with_prometheus: bool,
    steps: list[Step],
) -> None:
    from pipelines.checks import run_checks
    from pipelines.checks.output import print_report
    from pipelines.local import stack
    from pipelines.local.envoy import EnvoyMissing
    from pipelines.local.triton import TritonError

    t0 = time.perf_counter()
    try:
        state = stack.up(
            tree,
            p,
            root=root,
            replicas=replicas,
            repository=repository,
            with_prometheus=with_prometheus,
            say=lambda msg: out.print(msg, markup=False),
        )
    except stack.AlreadyRunning as exc:
        _fail(steps, "local up", str(exc), t0, EXIT_USAGE)
    except (EnvoyMissing, TritonError) as exc:  # not installed
        _fail(steps, "local up", str(exc), t0, EXIT_USAGE)
    except stack.StackError as exc:
        _fail(steps, "local up", str(exc), t0)
    try:
        skipped = list(state.skipped)
        for note in skipped:
            out.print(f"skipped: {note}", markup=False)
        detail = f"{len(state.tritons)} Triton, Envoy at {state.endpoint}" + (
            f", Prometheus at {state.prometheus_url}" if state.prometheus_url else ", no Prometheus"
        )
        steps.append(Step("local up", "passed", "; ".join([detail, *skipped]), time.perf_counter() - t0))
        out.print(detail, markup=False)

        out.rule("[bold]5. check (through Envoy)")
        t1 = time.perf_counter()
        out.print(
            f"$ sonic check --endpoint {state.endpoint} {p.ref}"
            + (f" --prometheus {state.prometheus_url}" if state.prometheus_url else ""),
            markup=False,
        )
        report = run_checks(p, state.endpoint, prometheus_url=state.prometheus_url)
        print_report(report, out)
        c = report.counts()
        steps.append(
            Step(
                "check",
                "passed" if report.passed else "failed",
                f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped",
                time.perf_counter() - t1,
            )
        )
        out.rule("[bold]6. report")
        _print_steps(steps)
    finally:
        t2 = time.perf_counter()
        if keep:
            out.rule("[bold]7. down (skipped: --keep)")
            out.print(
                f"the stack keeps running; stop it with: sonic local down {p.ref}",
                markup=False,
            )
        else:
            out.rule("[bold]7. down")
            for line in stack.down(state):
                out.print(f"stopped {line}", markup=False)
            out.print(
                f"stack stopped in {time.perf_counter() - t2:.1f}s; logs kept in {state.run_dir}",
                markup=False,
            )


def _fail(steps: list[Step], name: str, detail: str, t0: float, code: int = EXIT_INVALID) -> NoReturn:
    """Record a failed step, print the report so far, and exit."""
    out.print(Text(f"{name} failed: {detail}", style="bold red"))
    steps.append(Step(name, "failed", detail, time.perf_counter() - t0))
    _print_steps(steps)
    sys.exit(code)


def _print_steps(steps: list[Step]) -> None:
    styles = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
    table = Table(title="sonic demo", title_justify="left")
    for col in ("step", "result", "detail", "time"):
        table.add_column(col)
    for s in steps:
        table.add_row(s.name, Text(s.status, style=styles[s.status]), Text(s.detail), f"{s.seconds:.1f}s")
    out.print(table)


def print_site_summary(tree: Tree) -> None:
    for site in tree.sites.values():
        table = Table(title=f"site {site.name} — {site.description}", title_justify="left")
        for col in ("experiment/deployment", "namespace", "replicas", "GPU", "models"):
            table.add_column(col)
        used: dict[str, int] = {}
        for p in tree.placements_at(site.name):
            scale = f"{p.autoscaling.min}-{p.autoscaling.max} (KEDA)" if p.autoscaling else str(p.replicas)
            gpu = "CPU"
            if p.triton.gpu is not None:  # count 0: on the class's nodes, no GPU requested
                g = p.triton.gpu
                gpu = f"{g.count}x {g.gpu_class}" if g.count else f"CPU on {g.gpu_class} nodes"
            used[p.experiment] = used.get(p.experiment, 0) + p.gpus_per_pod * p.max_replicas
            table.add_row(p.ref, p.namespace, scale, gpu, str(len(p.models)))
        out.print(table)
        quotas = ", ".join(
            f"{e}: {used.get(e, 0)}/{g.gpu_quota} GPUs" for e, g in sorted(site.experiments.items())
        )
        out.print(f"  quota use at most replicas: {quotas}")
