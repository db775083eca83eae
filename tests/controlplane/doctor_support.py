"""What the `sonic site doctor` tests need around the shared control plane.

- :func:`prepare_site`: what a site admin creates when bootstrapping a site (docs/gitops.md and
  docs/workflows.md), so that the doctor passes: labelled namespaces, the IngressClass, the
  StorageClass, the snapshot claims, the Secrets, the Argo CD cluster Secret.
- :func:`prometheus_behind_token`: a real Prometheus on 127.0.0.1, reached through a TLS front that
  accepts one bearer token, the way clusters expose Prometheus to token holders (kube-rbac-proxy,
  oauth-proxy in front of Prometheus, which itself checks no bearer tokens).
- :func:`repo_copy` / :func:`edit_site`: a private copy of the repository whose site file a test
  may change, for the failures a cluster-wide change would cause for every other test.
- :func:`run_doctor`: the CLI as a site admin runs it, in a subprocess.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from pipelines.config.model import Site
from pipelines.config.names import POD_SECURITY_LEVEL
from pipelines.local.processes import free_port, stop, wait_until
from pipelines.local.prometheus import prometheus_binary, ready, start_prometheus
from tests.support.controlplane import ControlPlane, apply_object, ensure_namespace, site_prerequisites
from tests.support.httpd import loopback_server, serving
from tests.support.tls import TlsFiles, make_tls_files

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).with_name("sonic")
SONIC = (
    [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from pipelines.cli import main; main()"]
)

PIPELINES_NAMESPACE = "sonic-pipelines"  # gitops/workflows/common.yaml creates it
# The Secrets docs/workflows.md asks for, where the site's share of gitops/workflows reads them
# (sonic-check-token is optional there). Listed by hand: the test states what an admin creates,
# it does not ask the code under test.
WORKFLOW_SECRETS = {
    PIPELINES_NAMESPACE: {
        "sonic-github-token": "token",
        "sonic-gitops-push-token": "token",
        "sonic-prometheus-token": "token",
    },
}
# In each namespace that builds models: the read-only token (docs/security.md, "Tokens").
BUILD_SECRET = ("sonic-github-read-token", "token")
TRITON_ADMIN_SECRET = ("sonic-triton-admin", "key")  # in each granted namespace (docs/security.md)


def pss_labels() -> dict[str, str]:
    return {f"pod-security.kubernetes.io/{mode}": POD_SECURITY_LEVEL for mode in ("enforce", "audit", "warn")}


def secret(
    namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def must_apply(cp: ControlPlane, obj: Mapping[str, Any]) -> None:
    status, body = apply_object(cp, obj)
    assert status in (200, 201), f"{obj['kind']}/{obj['metadata']['name']}: HTTP {status}: {body}"


def argocd_cluster_secret(site: Site) -> dict[str, Any]:
    """What `argocd cluster add` writes for the site's destination server."""
    return secret(
        site.argocd.namespace,
        f"cluster-{site.name}",
        {
            "name": site.name,
            "server": site.argocd.server,
            "config": json.dumps({"tlsClientConfig": {"insecure": False}}),
        },
        {"argocd.argoproj.io/secret-type": "cluster"},
    )


def prepare_site(cp: ControlPlane, site: Site, prometheus_token: str) -> None:
    """Bootstrap ``site`` on the control plane as docs/gitops.md tells a site admin to."""
    granted = sorted({ns for grant in site.experiments.values() for ns in grant.namespaces})
    for ns in granted:
        ensure_namespace(cp, ns, pss_labels())
    for ns in (site.argocd.namespace, PIPELINES_NAMESPACE):
        ensure_namespace(cp, ns)
    if site.prometheus is not None:
        ensure_namespace(cp, site.prometheus.namespace)
    if site.ingress is not None:
        ensure_namespace(cp, site.ingress.namespace)
        must_apply(
            cp,
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": site.ingress.class_name},
                "spec": {"controller": "haproxy.org/ingress-controller"},
            },
        )
    # StorageClass and claims: one definition of what the site admin provides, shared with the
    # apply tests (the objects are cluster-wide and immutable in part, so both must agree).
    for prerequisite in site_prerequisites(site):
        must_apply(cp, prerequisite)
    for ns in granted:
        if site.prometheus is not None and site.prometheus.auth is not None:
            ref = site.prometheus.auth.secret_ref
            must_apply(cp, secret(ns, ref.name, {ref.key: prometheus_token}))
        must_apply(cp, secret(ns, BUILD_SECRET[0], {BUILD_SECRET[1]: "github-token"}))
        must_apply(cp, secret(ns, TRITON_ADMIN_SECRET[0], {TRITON_ADMIN_SECRET[1]: "triton-admin-key"}))
    for ns, secrets in WORKFLOW_SECRETS.items():
        for name, key in secrets.items():
            must_apply(cp, secret(ns, name, {key: "pipeline-token"}))
    must_apply(cp, argocd_cluster_secret(site))


# --- Prometheus ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusEndpoint:
    url: str  # https://127.0.0.1:PORT, the token-checking front
    tls: TlsFiles  # its CA is what the doctor must be told to trust
    token: str


def _token_front(backend: str, token: str) -> type[BaseHTTPRequestHandler]:
    class Front(BaseHTTPRequestHandler):
        """Pass a request on to Prometheus only with the right bearer token (401 otherwise)."""

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {token}":
                self._answer(401, b"Unauthorized\n", "text/plain")
                return
            try:
                with urllib.request.urlopen(backend + self.path, timeout=10) as resp:
                    self._answer(
                        resp.status, resp.read(), resp.headers.get("Content-Type", "application/json")
                    )
            except urllib.error.HTTPError as exc:
                self._answer(exc.code, exc.read(), exc.headers.get("Content-Type", "text/plain"))

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Front


@contextlib.contextmanager
def prometheus_behind_token(workdir: Path, token: str) -> Iterator[PrometheusEndpoint]:
    """A real Prometheus on 127.0.0.1 behind a TLS front that wants ``token``; both stopped after."""
    binary = prometheus_binary()
    assert binary is not None, "Prometheus is not installed (apt-get install prometheus)"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"}, "scrape_configs": []}))
    port = free_port()
    proc = start_prometheus(binary, config, workdir / "data", workdir / "prometheus.log", port=port)
    try:
        wait_until("prometheus ready", lambda: ready(port), timeout=30, procs=[proc])
        tls = make_tls_files(workdir / "tls")
        front = loopback_server(ThreadingHTTPServer, _token_front(f"http://127.0.0.1:{port}", token), tls)
        with serving(front):
            yield PrometheusEndpoint(f"https://127.0.0.1:{front.server_address[1]}", tls, token)
    finally:
        stop(proc, grace=5.0)


# --- the repository and the CLI --------------------------------------------------------------------


def repo_copy(dest: Path) -> Path:
    """A private copy of what the doctor reads: experiments/ and gitops/."""
    shutil.copytree(ROOT / "experiments", dest / "experiments")
    shutil.copytree(ROOT / "gitops", dest / "gitops")
    return dest


def edit_yaml(path: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    """Load every document of ``path``, let ``change`` modify them in place, write them back."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    change(docs)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def edit_site(root: Path, site: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the site file of the copy at ``root`` (``change`` gets its mapping)."""
    edit_yaml(root / "gitops" / "sites" / f"{site}.yaml", lambda docs: change(docs[0]))


@dataclass(frozen=True)
class DoctorRun:
    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.report["checks"] if c["status"] == "fail"]

    def explain(self) -> str:
        """For assertion messages: what failed, or the raw output."""
        try:
            return "\n".join(
                f"{c['check']} {c['target']}: {c['message']} -> {c['fix']}" for c in self.failures()
            )
        except ValueError:
            return f"exit {self.code}\n{self.stdout}\n{self.stderr}"


def run_doctor(cp: ControlPlane, site: str, *args: str, root: Path = ROOT, fmt: str = "json") -> DoctorRun:
    """`sonic site doctor SITE --kubeconfig <admin> --format FMT --root ROOT ARGS...` in a subprocess."""
    env = {k: v for k, v in cp.env().items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "SONIC_DEBUG")}
    env.pop("KUBECONFIG", None)  # only what --kubeconfig says
    proc = subprocess.run(
        [
            *SONIC,
            "site",
            "doctor",
            site,
            "--kubeconfig",
            str(cp.kubeconfig),
            "--format",
            fmt,
            "--root",
            str(root),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=root,
    )
    return DoctorRun(proc.returncode, proc.stdout, proc.stderr)
