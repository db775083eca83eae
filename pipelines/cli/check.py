"""``sonic check``: real inference requests against a live deployment, judged against its declaration."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click

from pipelines.cli import cli, die, err, load_or_exit, out
from pipelines.config import LayoutError, SiteDeployment, Tree, find_root


@cli.command()
@click.argument("deployment")
@click.option(
    "--endpoint", required=True, metavar="HOST:PORT", help="The deployment's gRPC endpoint (its Envoy)."
)
@click.option("--site", help="Which placement to check (needed when the deployment runs at several sites).")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the bearer token (JWT) sent with every request.",
)
@click.option(
    "--prometheus",
    "prometheus_url",
    metavar="URL",
    help="Prometheus to ask the load and activation queries (default: the site's Prometheus).",
)
@click.option(
    "--prometheus-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding a bearer token for Prometheus.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Bound for the whole run (default: the deployment's checks.timeout).",
)
@click.option(
    "--metrics-wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long an empty Prometheus answer is asked again (rates need two scrapes).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints one object with every check, its status, detail and measured numbers.",
)
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Repository holding the deployment.",
)
def check(
    deployment: str,
    endpoint: str,
    site: str | None,
    token_file: Path | None,
    prometheus_url: str | None,
    prometheus_token_file: Path | None,
    timeout: float | None,
    metrics_wait: float,
    fmt: str,
    root: Path,
) -> None:
    """Prove that DEPLOYMENT (name or experiment/name) answers correctly at ENDPOINT.

    \b
    Checks: server live and ready; each model ready; served metadata and config equal to the
    declaration; one inference with seeded synthetic inputs per model; outputs equal to the
    reference files within tolerance; a load probe against checks.latencySLO; JWT enforced
    (anonymous requests refused, the token accepted); the autoscaling and admission-gate
    queries return one finite number from Prometheus.

    \b
    Exit codes: 0 every check passed (skipped ones say why); 1 a check failed;
    2 usage or environment error.
    """
    try:
        from pipelines.checks import EndpointError, run_checks
        from pipelines.checks.output import print_report, to_json
    except ImportError as exc:
        die(
            f"the checks need tritonclient and numpy ({exc}); install them: pip install 'sonic-gitops[checks]'"
        )
    try:
        tree = load_or_exit(find_root(root), fmt=fmt)
    except LayoutError as exc:
        die(str(exc))
    p = placement(tree, deployment, site)
    token = read_secret(token_file, "--token-file") if token_file else None
    prom_token = (
        read_secret(prometheus_token_file, "--prometheus-token-file") if prometheus_token_file else None
    )
    if prometheus_url is None and tree.sites[p.site].prometheus is not None:
        prometheus_url = tree.sites[p.site].prometheus.url  # type: ignore[union-attr]
        if fmt == "text":
            err.print(f"sonic: asking the site's Prometheus at {prometheus_url} (override with --prometheus)")
    # The spinner only where a person watches; JSON output stays clean for machines.
    progress = (
        out.status(f"checking {p.experiment}/{p.name} at {endpoint} ...") if fmt == "text" else nullcontext()
    )
    try:
        with progress:
            report = run_checks(
                p,
                endpoint,
                token=token,
                prometheus_url=prometheus_url,
                prometheus_token=prom_token,
                timeout=timeout,
                metrics_wait=metrics_wait,
            )
    except EndpointError as exc:
        die(str(exc))
    if fmt == "json":
        click.echo(to_json(report), nl=False)
    else:
        print_report(report, out)
    sys.exit(0 if report.passed else 1)


def placement(tree: Tree, name: str, site: str | None) -> SiteDeployment:
    """The deployment at ``site`` (or at its only site); exits 2 naming the choices otherwise."""
    try:
        d = tree.deployment(name)
    except KeyError as exc:
        die(str(exc.args[0]))
    sites = [x.site for x in d.placements]
    if site is None:
        if len(sites) != 1:
            die(f"{d.experiment}/{d.name} runs at several sites ({', '.join(sites)}): choose one with --site")
        return d.placements[0]
    p = d.at(site)
    if p is None:
        die(f"{d.experiment}/{d.name} is not placed at site {site!r} (sites: {', '.join(sites)})")
    return p


def read_secret(path: Path, option: str) -> str:
    """The stripped content of a token file; exits 2 when it is missing or empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        die(f"{option} {path}: {exc.strerror or exc}")
    if not text:
        die(f"{option} {path}: the file is empty")
    return text
