"""``sonic pipelines render [--check]``: the Argo Workflows / Argo Events objects in gitops/workflows/.

``sonic pipelines verify-rendered``: the pull-request pipeline's offline check of gitops/rendered/.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, die, out, report_errors
from pipelines.cli.options import load_tree_at, root_option
from pipelines.config import ConfigErrors, layout
from pipelines.workflows.settings import SettingsError, load_settings

OUT_DIR = layout.WORKFLOWS_DIR
TOOLS = ("envoy", "promtool", "kubernetes-validate")


@cli.group()
def pipelines() -> None:
    """The pipelines that run this repository on Argo Workflows (defined in Python with Hera)."""


@pipelines.command()
@click.option(
    "--check", is_flag=True, help=f"Write nothing; exit 1 with a diff when {OUT_DIR}/ is out of date."
)
@root_option("Repository to render.")
def render(check: bool, root: Path) -> None:
    """Render WorkflowTemplates, CronWorkflows, EventSource, Sensor and RBAC into gitops/workflows/.

    \b
    Output is deterministic: the same repository renders byte-identical files, so CI can
    compare the committed files with a fresh render (--check).
    """
    root, tree = load_tree_at(root)
    # hera's models take a second to import: loaded here, not for every `sonic` call.
    from pipelines.workflows import files as workflows_render

    try:
        settings = load_settings(root)
    except ConfigErrors as exc:
        report_errors(exc, "text")
    except SettingsError as exc:
        die(str(exc), EXIT_INVALID)
    files = workflows_render.render(tree, settings)
    if check:
        d = workflows_render.drift(root, files)
        if d.clean:
            out.print(f"ok: {OUT_DIR}/ is up to date ({len(files)} files)")
            return
        click.echo(d.diff, nl=False)
        for name in d.missing:
            click.echo(f"missing: {OUT_DIR}/{name}")
        for name in d.stale:
            click.echo(f"not rendered any more: {OUT_DIR}/{name}")
        die(f"{OUT_DIR}/ is out of date: run `sonic pipelines render`", EXIT_INVALID)
    touched = workflows_render.write(root, files)
    summary = f"{len(touched)} of {len(files)} files changed" if touched else "nothing changed"
    out.print(f"rendered {OUT_DIR}/: {summary}")


@pipelines.command("verify-rendered")
@click.option(
    "--require-all", is_flag=True, help="Fail when a tool is missing (the pipeline image has them all)."
)
@root_option("Repository to check.")
def verify_rendered(require_all: bool, root: Path) -> None:
    """Render the tree afresh in memory, check it with the real tools, offline, and compare it with
    the committed gitops/rendered/ and gitops/argocd/.

    \b
    envoy --mode validate       every Envoy configuration
    promtool check rules        every Prometheus rule group
    kubernetes-validate         every core object, --strict, at its site's oldest and
                                newest Kubernetes version
    drift                       every committed file equals the fresh render

    The tools never read the committed files (a pull request writes them; Envoy would run their
    Lua): those are only compared, as text. Exit 1 when anything fails (or, with --require-all,
    when a tool is missing).
    """
    from pipelines.cli.render import UnsafeTreeError, read_tree
    from pipelines.config.repository import load_repository
    from pipelines.ops.verify_rendered import Finding
    from pipelines.ops.verify_rendered import verify as verify_rendered_tree
    from pipelines.render import RenderError, read_inputs, render_tree

    root, tree = load_tree_at(root)
    try:
        rendered = render_tree(tree, read_inputs(tree, load_repository(root)))
    except ConfigErrors as exc:
        report_errors(exc, "text")
    except RenderError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        die(f"{len(exc.problems)} deployment(s) cannot be rendered", EXIT_INVALID)
    committed: dict[str, str] | None = None
    unsafe: list[Finding] = []
    try:
        committed = read_tree(root)
    except UnsafeTreeError as exc:  # links, pipes...: reported, never followed or read
        unsafe = [Finding("drift", problem, "failed") for problem in exc.problems]
    findings = [*verify_rendered_tree(tree, rendered, committed), *unsafe]
    if not findings:
        die("nothing to verify: the configuration renders no deployment", EXIT_INVALID)
    failed = [f for f in findings if f.outcome == "failed"]
    skipped = [f for f in findings if f.outcome == "skipped"]
    for f in failed:
        click.echo(f"FAIL {f.tool}: {f.subject}" + (f"\n{f.detail}" if f.detail else ""))
    for reason in sorted({f"{f.tool}: {f.detail}" for f in skipped}):
        click.echo(f"skipped {reason}")
    counts = {tool: sum(1 for f in findings if f.tool == tool and f.outcome == "ok") for tool in TOOLS}
    drifted = sum(1 for f in failed if f.tool == "drift")
    out.print(
        "checked a fresh render: "
        + ", ".join(f"{n} with {tool}" for tool, n in counts.items())
        + f"; {len(rendered)} files compared with the committed tree, {drifted} differ"
    )
    if failed or (require_all and skipped):
        die(f"{len(failed)} failed, {len(skipped)} skipped", EXIT_INVALID)


# Argo's node phases: the checks that count as passed (a check skipped by its `when` did not run
# because nothing it checks changed).
PASSED_PHASES = ("Succeeded", "Skipped")


@pipelines.command("verdict")
@click.argument("results", nargs=-1, required=True, metavar="CHECK=PHASE...")
def verdict(results: tuple[str, ...]) -> None:
    """Fail unless every check passed: the last task of pr-validation.

    The checks run one after another whatever the previous one said (so the status lists every
    failure), which means a failed check is "handled" by the next one's `depends`; Argo then
    takes the DAG's phase from its last tasks only (argo-workflows workflow/controller/dag.go,
    assessDAGPhase: a later task that completes overrides its branch's phase), so without this
    step a failed owners or render check would end in a Succeeded workflow and a green status.
    Each CHECK=PHASE is a task's `{{tasks.<name>.status}}`.
    """
    failed = []
    for item in results:
        name, sep, phase = item.partition("=")
        if not sep or not name:
            die(f"expected CHECK=PHASE, got {item!r}", 2)
        out.print(f"{name}: {phase}")
        if phase not in PASSED_PHASES:
            failed.append(name)
    if failed:
        die(f"{len(failed)} check(s) did not pass: {', '.join(failed)}", EXIT_INVALID)
    out.print(f"all {len(results)} checks passed")
