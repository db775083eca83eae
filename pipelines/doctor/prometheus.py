"""Does the site's Prometheus answer a query, with the token the cluster's Secret holds?

KEDA's triggers, Envoy's admission gate and the PostSync checks all ask ``prometheus.url`` with
the bearer token of ``prometheus.auth.secretRef``; this asks the same question they depend on
(``vector(1)``, which needs no data) with the same token, TLS verified. From a laptop the
in-cluster URL is usually out of reach: ``--prometheus-url`` points at a port-forward instead,
and ``--prometheus-ca`` names the CA of a certificate the system does not trust.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config.model import Site
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.namespaces import granted_namespaces
from pipelines.doctor.result import Finding, failed, passed, skipped
from pipelines.doctor.text import command, listing, site_file

CHECK = "prometheus.query"
QUERY = "vector(1)"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """How one query went: ``problem`` is empty on success."""

    problem: str  # "", "unreachable", "tls", "auth", "error"
    detail: str


def ask(url: str, token: str | None, ca_file: Path | None) -> Answer:
    """GET ``url``/api/v1/query?query=vector(1); never raises for network or HTTP trouble."""
    import httpx

    from pipelines.checks.prometheus import parse

    # Verification is never turned off: the system's trust store (SSL_CERT_FILE honoured) or --prometheus-ca.
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        return Answer("tls", f"cannot use {ca_file} as a CA bundle: {exc}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(
            f"{url.rstrip('/')}/api/v1/query",
            params={"query": QUERY},
            headers=headers,
            timeout=TIMEOUT,
            verify=context,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        if _tls_failure(exc):
            return Answer("tls", f"TLS verification failed: {_root(exc)}")
        return Answer("unreachable", f"{type(exc).__name__}: {_root(exc)}")
    if resp.status_code in (401, 403):
        return Answer("auth", f"HTTP {resp.status_code}: {resp.text.strip()[:200]}")
    try:
        body: Any = resp.json()
    except ValueError:
        return Answer(
            "error", f"HTTP {resp.status_code}, not a Prometheus API answer: {resp.text.strip()[:200]}"
        )
    if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        why = body.get("error") if isinstance(body, dict) else None
        return Answer("error", f"HTTP {resp.status_code}: {why or 'not a success'}")
    answer = parse(QUERY, body.get("data"))
    if not answer.ok or answer.value != 1.0:
        return Answer("error", f"{QUERY} gave {answer.value} ({answer.detail or 'expected 1'})")
    return Answer("", f"{QUERY} = 1")


def _root(exc: BaseException) -> str:
    """The innermost cause's message: httpx wraps httpcore wraps ssl."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def tokens_by_value(
    site: Site, secrets: Mapping[str, Mapping[str, Any] | None]
) -> tuple[dict[str, list[str]], list[str]]:
    """(token -> namespaces holding it, namespaces without it) from each granted namespace's Secret."""
    assert site.prometheus is not None and site.prometheus.auth is not None
    key = site.prometheus.auth.secret_ref.key
    tokens: dict[str, list[str]] = {}
    lacking: list[str] = []
    for ns, secret in secrets.items():
        raw = ((secret or {}).get("data") or {}).get(key)
        if not raw:
            lacking.append(ns)
            continue
        token = base64.b64decode(raw).decode("utf-8", "replace").strip()
        tokens.setdefault(token, []).append(ns)
    return tokens, lacking


def answer_finding(site: Site, url: str, overridden: bool, answer: Answer, token_from: str) -> Finding:
    """The verdict on one answer of Prometheus (pure)."""
    via = f" with the token of {token_from}" if token_from else ""
    if not answer.problem:
        return passed(CHECK, url, f"answers{via}: {answer.detail}")
    where = f"prometheus.url in {site_file(site)}"
    ns = site.prometheus.namespace if site.prometheus else "monitoring"
    forward = command("kubectl", "port-forward", "-n", ns, "svc/PROMETHEUS", "9090")
    fixes = {
        "unreachable": (
            "check the URL (--prometheus-url)"
            if overridden
            else f"check {where}; from outside the cluster use a port-forward ({forward}) and --prometheus-url "
            "http://127.0.0.1:9090"
        ),
        "tls": "give the CA that signed Prometheus' certificate with --prometheus-ca FILE (the certificate must "
        "also name the URL's host; verification is never turned off)",
        "auth": f"put a token Prometheus accepts into {token_from}"
        if token_from
        else f"Prometheus wants a token: set prometheus.auth.secretRef in {site_file(site)} and create that Secret",
        "error": f"check that {url} is Prometheus' own address (its HTTP API under /api/v1)",
    }
    return failed(
        CHECK, url, f"Prometheus at {url}{via} did not answer {QUERY}: {answer.detail}", fixes[answer.problem]
    )


def check_prometheus(
    cluster: Cluster, site: Site, *, url_override: str | None = None, ca_file: Path | None = None
) -> list[Finding]:
    if site.prometheus is None:
        return [skipped(CHECK, "-", "the site declares no Prometheus")]
    url = url_override or site.prometheus.url
    if site.prometheus.auth is None:
        return [answer_finding(site, url, url_override is not None, ask(url, None, ca_file), "")]
    ref = site.prometheus.auth.secret_ref
    secrets = {
        ns: cluster.get(f"/api/v1/namespaces/{ns}/secrets/{ref.name}") for ns in granted_namespaces(site)
    }
    tokens, lacking = tokens_by_value(site, secrets)
    if not tokens:
        return [
            failed(
                CHECK,
                url,
                f"no token to ask with: Secret {ref.name} (key {ref.key}, prometheus.auth.secretRef) is missing or "
                f"empty in {listing(lacking)}",
                "create it: "
                + command("kubectl", "create", "secret", "generic", ref.name, "-n", lacking[0])
                + f" --from-file={ref.key}=TOKEN_FILE",
            )
        ]
    # Usually one token copied into every namespace; each distinct one is asked once.
    return [
        answer_finding(
            site,
            url,
            url_override is not None,
            ask(url, token, ca_file),
            f"Secret {listing([f'{ns}/{ref.name}' for ns in namespaces])} (key {ref.key})",
        )
        for token, namespaces in tokens.items()
    ]
