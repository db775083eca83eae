"""``sonic demo``: the whole chain on this machine, step by step."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from pipelines.cli import cli, die, load_or_exit, out
from pipelines.config import LayoutError, Tree, find_root


@cli.command()
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Repository to run on.",
)
def demo(root: Path) -> None:
    """Run the whole chain on this machine: validate the example tree and summarise each site."""
    try:
        root = find_root(root)
    except LayoutError as exc:
        die(str(exc))
    out.rule("[bold]1. validate")
    tree = load_or_exit(root)
    out.print(
        f"{len(tree.sites)} sites, {len(tree.experiments)} experiments, {len(tree.deployments)} deployments: all valid"
    )
    print_site_summary(tree)


def print_site_summary(tree: Tree) -> None:
    for site in tree.sites.values():
        table = Table(title=f"site {site.name} — {site.description}", title_justify="left")
        for col in ("experiment/deployment", "namespace", "replicas", "GPU", "models"):
            table.add_column(col)
        used: dict[str, int] = {}
        for p in tree.site_deployments(site.name):
            scale = f"{p.autoscaling.min}-{p.autoscaling.max} (KEDA)" if p.autoscaling else str(p.replicas)
            gpu = f"{p.triton.gpu.count}x {p.triton.gpu.gpu_class}" if p.triton.gpu else "CPU"
            used[p.experiment] = used.get(p.experiment, 0) + p.gpus_per_pod * p.max_replicas
            table.add_row(f"{p.experiment}/{p.name}", p.namespace, scale, gpu, str(len(p.models)))
        out.print(table)
        quotas = ", ".join(
            f"{e}: {used.get(e, 0)}/{g.gpu_quota} GPUs" for e, g in sorted(site.experiments.items())
        )
        out.print(f"  quota use at most replicas: {quotas}")
