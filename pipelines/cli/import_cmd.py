"""``sonic import supersonic``: a SuperSONIC values file -> a deployment file, a site fragment, a report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, die, report_errors
from pipelines.cli.options import format_option
from pipelines.config import ConfigError, ConfigErrors, LayoutError, Location, find_root, layout
from pipelines.config.checked import check_tree
from pipelines.config.errors import display_path
from pipelines.config.model import deployment_ref


@cli.group(name="import")
def import_group() -> None:
    """Bring deployments over from other tools, with a report of what changed."""


@import_group.command(name="supersonic")
@click.argument("values", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--experiment",
    "-e",
    required=True,
    help=f"The experiment that owns the deployment ({layout.experiment_dir('E')}).",
)
@click.option(
    "--site",
    "-s",
    required=True,
    help=f"The site the values file was installed at ({layout.site_file('S')}).",
)
@click.option("--name", "-n", help="Deployment name (default: the file's nameOverride).")
@click.option("--namespace", help="Namespace at the site (default: the experiment's only namespace there).")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help="A model the deployment serves (repeatable); needed when the file loads every model of its "
    "repositories instead of naming them with --load-model.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Write the deployment here (e.g. {layout.deployment_file('cms', 'particlenet-geddes')}); default: stdout, "
    "with the report on stderr.",
)
@click.option(
    "--site-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the site fragment here (default: printed after the report).",
)
@format_option(
    "json prints one object: deployment, siteFragment, siteFragmentNotes, report (one entry per key)."
)
def supersonic(
    values: Path,
    experiment: str,
    site: str,
    name: str | None,
    namespace: str | None,
    models: tuple[str, ...],
    out: Path | None,
    site_out: Path | None,
    fmt: str,
) -> None:
    """Import a SuperSONIC Helm values file (chart 0.3.x) as a deployment.

    VALUES is checked as `helm install` checks it (merged over the chart's defaults, against the
    chart's values.schema.json). Every key of the file is reported as mapped, mapped with a
    change (and why ours differs), not representable (and why), unused (off or empty), or
    unknown to the chart. triton.args
    is split with shlex, never executed, and each tritonserver option is reported on its own.

    When the site lacks something the deployment needs (a GPU class for the file's GPU
    products, CVMFS or NFS storage, an ingress or an allowed ingress annotation, Prometheus,
    the image's repository, GPU or namespace quota), a fragment for
    gitops/sites/SITE.yaml is written for its admins. The result is validated like any other
    deployment, with the fragment merged into the site file.

    \b
    Exit codes: 0 imported and valid; 1 the values file cannot be imported, or the result does
    not validate (the errors say where); 2 usage error.

    \b
    Example:
      sonic import supersonic values-geddes-cms.yaml -e cms -s geddes -n particlenet-geddes \\
          -o experiments/cms/particlenet-geddes.yaml --site-out geddes-fragment.yaml
    """
    from pipelines.importers.supersonic import STATUS_TEXT, describe, import_values, validate_import

    try:
        root = find_root(Path.cwd())
    except LayoutError as exc:
        die(str(exc))
    tree, _ = check_tree(root)
    try:
        result = import_values(
            values, tree, experiment=experiment, site=site, name=name, namespace=namespace, models=models
        )
    except ConfigErrors as exc:
        report_errors(exc, fmt)
    target = out or Path(layout.deployment_file(experiment, result.name))
    problems = [_relocate(e, target, root, site) for e in validate_import(result, root)]
    if out is not None:
        out.write_text(result.deployment_yaml, encoding="utf-8")
    if site_out is not None and result.fragment:
        site_out.write_text(result.fragment_yaml, encoding="utf-8")
    if fmt == "json":
        body = {**result.as_dict(), "valid": not problems, "errors": [e.as_dict() for e in problems]}
        click.echo(json.dumps(body, indent=2))
        sys.exit(EXIT_INVALID if problems else 0)
    to_stderr = out is None
    if out is None:
        click.echo(result.deployment_yaml, nl=False)
    say = _printer(to_stderr)
    say(
        f"import of {result.source} as {deployment_ref(experiment, result.name)} at site {site!r} (namespace {result.namespace})"
    )
    for line in result.report:
        where = f"{result.source}:{line.line}" if line.line else result.source
        say(f"{where}: {line.key}: {describe(line)}")
    counts: dict[str, int] = {}
    for line in result.report:
        counts[STATUS_TEXT[line.status]] = counts.get(STATUS_TEXT[line.status], 0) + 1
    say(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if out is not None:
        say(f"wrote {display_path(out)}")
    if result.fragment:
        if site_out is not None:
            say(f"wrote {display_path(site_out)}: merge it into {layout.site_file(site)} (the site admins)")
        else:
            say(f"site fragment for {layout.site_file(site)} (the site admins merge it):")
            say(result.fragment_yaml.rstrip("\n"))
    if problems:
        say("the imported deployment does not validate yet:")
        for e in problems:
            say(str(e))
        sys.exit(EXIT_INVALID)


def _printer(to_stderr: bool):  # type: ignore[no-untyped-def]
    def say(text: str) -> None:
        click.echo(text, err=to_stderr)

    return say


def _relocate(err: ConfigError, target: Path, root: Path, site: str) -> ConfigError:
    """An error found in the scratch copy, shown at the file the user has (or will have)."""
    name = Path(err.location.file).name
    shown = display_path(target) if name == target.name else f"{layout.site_file(site)} (with the fragment)"
    return ConfigError(Location(shown, err.location.line, err.location.col), err.path, err.message)
