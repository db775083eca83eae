"""``sonic site``: commands for site admins. ``sonic site doctor SITE`` checks a live cluster.

The checks live in :mod:`pipelines.doctor`; this module parses options and formats the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text

from pipelines.cli import EXIT_INVALID, cli, die, err, out
from pipelines.cli.options import file_option, load_tree_at, root_option
from pipelines.config import layout

if TYPE_CHECKING:
    from pipelines.doctor.result import Report

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}
_LABEL = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


@cli.group()
def site() -> None:
    """Commands for site admins (the people who own gitops/sites/<site>.yaml)."""


@site.command()
@click.argument("site_name", metavar="SITE")
@file_option(
    "--kubeconfig", help="Kubeconfig of the site's cluster (default: $KUBECONFIG, then ~/.kube/config)."
)
@click.option("--context", help="Kubeconfig context to use (default: the current context).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json prints one object with every check, its status, message and fix.",
)
@click.option(
    "--prometheus-url",
    metavar="URL",
    help="Ask Prometheus here instead of the site's prometheus.url, e.g. through "
    "`kubectl port-forward -n monitoring svc/prometheus 9090` from outside the cluster.",
)
@file_option(
    "--prometheus-ca",
    exists=True,
    help="CA bundle (PEM) that verifies Prometheus' certificate (default: the system's trust store).",
)
@click.option(
    "--receives-webhooks",
    is_flag=True,
    help=f"This cluster also runs pr-validation and Argo Events ({layout.WORKFLOWS_DIR}/pr-validation.yaml, events.yaml).",
)
@root_option(f"Repository holding {layout.site_file('SITE')} and the rendered tree.")
def doctor(
    site_name: str,
    kubeconfig: Path | None,
    context: str | None,
    fmt: str,
    prometheus_url: str | None,
    prometheus_ca: Path | None,
    receives_webhooks: bool,
    root: Path,
) -> None:
    """Check that the cluster of SITE is ready for what the repository deploys there.

    \b
    Against gitops/sites/SITE.yaml and the committed gitops/rendered/SITE/, gitops/argocd/SITE/
    and the site's share of gitops/workflows/:
      kubernetes.version  the server inside kubernetes.minVersion..maxVersion
      api.kinds           every kind the objects use served at its version (KEDA, Argo CD,
                          Argo Workflows/Events, Prometheus Operator CRDs)
      namespace           granted namespaces exist and enforce Pod Security restricted;
                          prometheus.namespace and ingress.namespace exist
      ingress.class       the site's IngressClass
      storage.class/claim StorageClasses, and the claims pods mount in their namespaces
      secret              the Secrets objects read and the site file promises (keys too)
      gpu.class           nodes with each GPU class's labels, allocatable GPUs, tolerated taints
      prometheus.query    Prometheus answers vector(1) with the token of the cluster's Secret
      argocd.cluster      Argo CD has a cluster Secret for argocd.server (or it is in-cluster)
      apply.dry-run       a server-side dry-run apply of every object, refusals with their file

    \b
    Only reads, plus dry-run applies (field manager sonic-doctor): nothing is changed.

    \b
    Exit codes: 0 every check passed (skipped ones say why); 1 a check failed;
    2 usage or environment error (no kubeconfig, cluster unreachable, unknown site).
    """
    try:
        import httpx  # noqa: F401 - both needed by the checks, imported here to fail early
        import kubernetes  # noqa: F401
    except ImportError as exc:
        die(
            f"the doctor needs the kubernetes client and httpx ({exc}); install them: pip install 'sonic-gitops[workflows]'"
        )
    from pipelines.doctor.cluster import Cluster, ClusterUnavailable
    from pipelines.doctor.manifests import ShareError, load_share
    from pipelines.doctor.runner import Options, diagnose

    repo, tree = load_tree_at(root, "json" if fmt == "json" else "text")
    site_config = tree.sites.get(site_name)
    if site_config is None:
        die(
            f"unknown site {site_name!r} (no {layout.site_file(site_name)}); known: {', '.join(sorted(tree.sites))}"
        )
    try:
        share = load_share(repo, site_config.name, receives_webhooks=receives_webhooks)
    except ShareError as exc:
        die(str(exc), EXIT_INVALID)
    options = Options(
        prometheus_url=prometheus_url, prometheus_ca=prometheus_ca, receives_webhooks=receives_webhooks
    )
    try:
        with Cluster.connect(kubeconfig, context) as cluster:
            # The spinner only where a person watches; JSON output stays clean for machines.
            if fmt == "table":
                with err.status(f"checking site {site_name} at {cluster.server} ...") as status:
                    report = diagnose(
                        cluster,
                        site_config,
                        share,
                        options,
                        progress=lambda name: status.update(f"checking {name} ..."),
                    )
            else:
                report = diagnose(cluster, site_config, share, options)
    except ClusterUnavailable as exc:
        die(str(exc))
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_table(report)
    sys.exit(0 if report.passed else EXIT_INVALID)


def _print_table(report: Report) -> None:
    t = Table(title=f"site {report.site} at {report.server}", title_justify="left")
    t.add_column("", no_wrap=True)
    t.add_column("check", no_wrap=True)
    t.add_column("target", overflow="fold", max_width=30)
    t.add_column("result", overflow="fold", min_width=40)  # paths and commands wrap, never end in an ellipsis
    for f in report.findings:
        result = Text(f.message)
        if f.fix:
            result.append("\n→ " + f.fix, style="cyan")
        t.add_row(Text(_LABEL[f.status], style=_STYLE[f.status]), f.check, f.target, result)
    out.print(t)
    c = report.counts()
    verdict = Text("PASSED", style="bold green") if report.passed else Text("FAILED", style="bold red")
    out.print(Text.assemble(verdict, f": {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped"))
