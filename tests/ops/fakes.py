"""Local HTTP servers on 127.0.0.1 that speak real wire formats, for what cannot run here.

``RecordingServer`` answers with a function of the request and records every request (method,
path with query, headers, body) so tests can assert exactly what a client sent. Used as the
GitHub REST API, the Kubernetes API (Argo CD Applications) and a Prometheus Pushgateway.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jsonschema import Draft7Validator

from tests.render.support import crd_schema
from tests.support.github_contract import contract as github_api
from tests.support.httpd import loopback_server, serving
from tests.support.tls import TlsFiles


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # path and query, as sent
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]
Contract = Callable[[Request, Response], list[str]]  # the violations of one exchange


class RecordingServer:
    """A threaded HTTP server; ``handler`` decides each answer; ``requests`` lists what arrived."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        tls: TlsFiles | None = None,
        contract: Contract | None = None,
    ):
        self.handler = handler
        self.tls = tls
        self.contract = contract
        self.requests: list[Request] = []
        self.violations: list[str] = []  # of the contract, by our client's requests or the answers
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(req)
                try:
                    resp = server.handler(req)
                except Exception as exc:  # a bug in a test handler: answer 500, never hang the client
                    resp = Response(500, {"message": f"test handler failed: {exc!r}"})
                if server.contract is not None:
                    found = server.contract(req, resp)
                    with server._lock:
                        server.violations += found
                payload = resp.body
                if isinstance(payload, dict | list):
                    data = json.dumps(payload).encode()
                    ctype = "application/json"
                elif isinstance(payload, str):
                    data, ctype = payload.encode(), "text/plain; charset=utf-8"
                else:
                    data, ctype = payload or b"", "application/octet-stream"
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.headers.get("Content-Type", ctype))
                self.send_header("Content-Length", str(len(data)))
                for k, v in resp.headers.items():
                    if k != "Content-Type":
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = loopback_server(ThreadingHTTPServer, _Handler, tls=tls, host=host)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"


@contextmanager
def serve(
    handler: Handler, host: str = "127.0.0.1", tls: TlsFiles | None = None, contract: Contract | None = None
) -> Iterator[RecordingServer]:
    """Run a RecordingServer for the duration of a ``with`` block (always shut down).

    With a ``contract``, every exchange is checked against it and the block fails at its end if
    one broke it (the answer still went out: the client under test sees what it would have).
    """
    server = RecordingServer(handler, host, tls, contract)
    with serving(server._httpd):
        yield server
    assert not server.violations, "the fake or the client broke the contract:\n" + "\n".join(
        server.violations
    )


# --- GitHub's REST API, checked against its published OpenAPI description ------------------------


def github_contract(req: Request, resp: Response) -> list[str]:
    return github_api().check(req.method, req.path, req.body, resp.status, resp.body)


def serve_github(handler: Handler, host: str = "127.0.0.1") -> AbstractContextManager[RecordingServer]:
    """A fake GitHub whose every answer, and every request our client sends it, fits GitHub's API."""
    return serve(handler, host, contract=github_contract)


def github_status(state: str, context: str = "default") -> dict[str, Any]:
    """A commit status as ``POST /repos/{owner}/{repo}/statuses/{sha}`` answers (GitHub's example)."""
    status = github_api().example("post", "/repos/{owner}/{repo}/statuses/{sha}", 201)
    return {**status, "state": state, "context": context}


def github_comment(id_: int, body: str, login: str, repository: str, number: int = 7) -> dict[str, Any]:
    """An issue comment as GitHub returns it (its example, with our values)."""
    comment = github_api().example("get", "/repos/{owner}/{repo}/issues/comments/{comment_id}", 200)
    comment.update(
        id=id_,
        body=body,
        html_url=f"https://github.com/{repository}/pull/{number}#issuecomment-{id_}",
        url=f"https://api.github.com/repos/{repository}/issues/comments/{id_}",
    )
    comment["user"] = {**comment["user"], "login": login}
    return comment


def github_error(message: str) -> dict[str, Any]:
    """GitHub's error body (``basic-error``)."""
    return {"message": message, "documentation_url": "https://docs.github.com/rest"}


def application(
    name: str,
    namespace: str = "argocd",
    *,
    sync: str = "Synced",
    health: str = "Healthy",
    revision: str = "",
    operation: str | None = "Succeeded",
    message: str = "",
) -> dict[str, Any]:
    """An ``applications.argoproj.io`` object as the Kubernetes API returns it (the fields read)."""
    status: dict[str, Any] = {
        "sync": {"status": sync, "revision": revision},
        "health": {"status": health, **({"message": message} if message else {})},
        "reconciledAt": "2026-01-01T00:00:00Z",
    }
    if operation is not None:
        status["operationState"] = {
            "operation": {"sync": {"revision": revision}},  # required by the CRD
            "phase": operation,
            "message": message or f"operation {operation.lower()}",
            "syncResult": {"revision": revision},
            "startedAt": "2026-01-01T00:00:00Z",
        }
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1", "uid": "0000"},
        "spec": {"project": "cms", "destination": {"server": "https://kubernetes.default.svc"}},
        "status": status,
    }
    # Held to Argo CD's own schema (../shared/crds), so the fake cannot answer what Argo CD cannot.
    errors = [e.message for e in Draft7Validator(crd_schema("Application", "v1alpha1")).iter_errors(app)]
    assert not errors, f"the fake Application breaks Argo CD's CRD: {errors}"
    return app


def kube_status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``v1.Status`` error body, as the API server sends with 4xx/5xx answers."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def kubeconfig(server: str) -> str:
    """A kubeconfig pointing the official client at ``server`` with a bearer token."""
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {server}\n"
        "users:\n- name: test\n  user:\n    token: test-token\n"
        "contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n"
    )
