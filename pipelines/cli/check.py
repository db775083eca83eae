"""``sonic check``: real inference requests against a live deployment, judged against its declaration."""

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack, nullcontext
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, EXIT_USAGE, cli, die, err, out
from pipelines.cli.options import (
    client_credentials_option,
    dir_option,
    endpoint_option,
    file_option,
    format_option,
    load_tree_at,
    prometheus_option,
    resolve_placement,
    root_option,
    seconds_option,
    site_option,
)
from pipelines.config import Placement, layout


@cli.command()
@click.argument("deployment", required=False)
@file_option(
    "--spec",
    "spec_file",
    exists=True,
    help="Check the deployment described by this check spec (deployment.json, as in the check Job's "
    "ConfigMap) instead of a DEPLOYMENT of a repository.",
)
@dir_option(
    "--rendered",
    "rendered_dir",
    help=f"Check the deployment rendered in this {layout.rendered_dir('<site>', '<experiment>', '<deployment>')} "
    "directory (e.g. of a GitOps branch checkout): its check spec ConfigMap, what Argo CD deployed.",
)
@endpoint_option("The deployment's gRPC endpoint (its Envoy).")
@site_option("Which placement to check (needed when the deployment runs at several sites).")
@file_option("--token-file", help="File holding the bearer token (JWT) sent with every request.")
@client_credentials_option(
    "Directory with token-url, client-id, client-secret (and optionally scope, audience), e.g. a "
    "mounted Secret: a fresh JWT is requested with the OAuth2 client credentials grant when the "
    "deployment declares JWT auth (stored tokens expire)."
)
@prometheus_option("Prometheus to ask the load and activation queries (default: the site's Prometheus).")
@file_option("--prometheus-token-file", help="File holding a bearer token for Prometheus.")
@click.option(
    "--no-prometheus",
    is_flag=True,
    help="Ask no Prometheus (not even the site's): the scaling and admission-gate query checks are "
    "skipped. For a local stack started without Prometheus.",
)
@seconds_option("--timeout", help="Bound for the whole run (default: the deployment's checks.timeout).")
@seconds_option(
    "--metrics-wait",
    default=60.0,
    minimum=0,
    help="How long an empty Prometheus answer is asked again (rates need two scrapes).",
)
@format_option("json prints one object with every check, its status, detail and measured numbers.")
@root_option("Repository holding the deployment.")
def check(
    deployment: str | None,
    spec_file: Path | None,
    rendered_dir: Path | None,
    endpoint: str,
    site: str | None,
    token_file: Path | None,
    client_credentials: Path | None,
    prometheus_url: str | None,
    prometheus_token_file: Path | None,
    no_prometheus: bool,
    timeout: float | None,
    metrics_wait: float,
    fmt: str,
    root: Path,
) -> None:
    """Prove that DEPLOYMENT (name or experiment/name) answers correctly at ENDPOINT.

    \b
    The deployment comes from the repository (DEPLOYMENT, --site, --root), from a check spec
    (--spec FILE: what the PostSync Job runs, where no repository is at hand) or from a rendered
    directory (--rendered DIR: the check spec ConfigMap in DIR/configmap.yaml, e.g. on the
    GitOps branch); with --spec and --rendered, --prometheus is asked only when given.

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
    with ExitStack() as cleanup:
        if rendered_dir is not None:
            spec_file = _rendered_spec(rendered_dir, deployment, spec_file, cleanup)
        p, site_prometheus = _deployment(deployment, spec_file, site, root, fmt)
        if token_file is not None and client_credentials is not None:
            die("give --token-file or --client-credentials, not both")
        token = read_secret(token_file, "--token-file") if token_file else None
        if client_credentials is not None and p.envoy.auth is not None and p.envoy.auth.jwt is not None:
            token = _fresh_token(client_credentials, p.envoy.auth.jwt.audiences)
        prom_token = (
            read_secret(prometheus_token_file, "--prometheus-token-file") if prometheus_token_file else None
        )
        if no_prometheus and prometheus_url is not None:
            die("give --prometheus or --no-prometheus, not both")
        if prometheus_url is None and site_prometheus is not None and not no_prometheus:
            prometheus_url = site_prometheus
            if fmt == "text":
                err.print(
                    f"sonic: asking the site's Prometheus at {prometheus_url} (override with --prometheus)"
                )
        # The spinner only where a person watches; JSON output stays clean for machines.
        progress = out.status(f"checking {p.ref} at {endpoint} ...") if fmt == "text" else nullcontext()
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


def _rendered_spec(
    directory: Path, deployment: str | None, spec_file: Path | None, cleanup: ExitStack
) -> Path:
    """The check spec of a rendered deployment directory, written to a scratch directory ``cleanup`` removes."""
    from pipelines.config.checkspec import SpecError, extract_rendered

    if deployment is not None or spec_file is not None:
        die("give one of DEPLOYMENT, --spec FILE and --rendered DIR")
    scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sonic-check-")))
    try:
        return extract_rendered(directory, scratch)
    except SpecError as exc:
        die(str(exc), EXIT_INVALID)


def _deployment(
    deployment: str | None, spec_file: Path | None, site: str | None, root: Path, fmt: str
) -> tuple[Placement, str | None]:
    """The placement to check and its site's Prometheus URL (None from a spec); exits 2 on misuse."""
    if spec_file is not None:
        if deployment is not None:
            die(f"give DEPLOYMENT or --spec, not both ({deployment!r} and --spec {spec_file})")
        from pipelines.config.checkspec import SpecError, load_spec

        try:
            p = load_spec(spec_file)
        except SpecError as exc:
            die(str(exc))
        if site is not None and site != p.site:
            die(f"--site {site}: the spec {spec_file} describes {p.ref} at site {p.site!r}")
        return p, None
    if deployment is None:
        die("missing DEPLOYMENT (name or experiment/name), --spec FILE or --rendered DIR")
    _, tree = load_tree_at(root, fmt)
    p = resolve_placement(tree, deployment, site)
    from pipelines.config.names import prometheus_url

    return p, prometheus_url(p, tree.sites[p.site])


def _fresh_token(directory: Path, audiences: tuple[str, ...]) -> str:
    """A JWT for the deployment's audience from the credentials in ``directory``.

    The token is asked for the deployment's first audience unless the credentials name one of
    its others: a token for another deployment's audience is refused by this one's Envoy, and
    one for this audience by every other (issue 11, finding 14). Exits 1 when refused, 2 when
    worth retrying.
    """
    from dataclasses import replace

    from pipelines.checks.oauth2 import CredentialsError, TokenError, fetch_token, load_client_credentials

    try:
        creds = load_client_credentials(directory)
        if creds.audience is not None and creds.audience not in audiences:
            raise CredentialsError(
                f"{directory / 'audience'}: {creds.audience!r} is not an audience of this deployment "
                f"(envoy.auth.jwt.audiences: {', '.join(audiences)}); its Envoy would refuse the token"
            )
        return fetch_token(replace(creds, audience=creds.audience or audiences[0]))
    except CredentialsError as exc:
        die(f"--client-credentials: {exc}")
    except TokenError as exc:
        die(str(exc), EXIT_USAGE if exc.transient else EXIT_INVALID)


def read_secret(path: Path, option: str) -> str:
    """The stripped content of a token file; exits 2 when it is missing or empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        die(f"{option} {path}: {exc.strerror or exc}")
    if not text:
        die(f"{option} {path}: the file is empty")
    return text
