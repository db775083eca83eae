"""Local HTTP servers on 127.0.0.1 that speak real wire formats, for what cannot run here.

``RecordingServer`` answers with a function of the request and records every request (method,
path with query, headers, body) so tests can assert exactly what a client sent. Used as the
GitHub REST API, the Kubernetes API (Argo CD Applications) and a Prometheus Pushgateway.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


class RecordingServer:
    """A threaded HTTP server; ``handler`` decides each answer; ``requests`` lists what arrived."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", tls: TlsFiles | None = None):
        self.handler = handler
        self.tls = tls
        self.requests: list[Request] = []
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
    handler: Handler, host: str = "127.0.0.1", tls: TlsFiles | None = None
) -> Iterator[RecordingServer]:
    """Run a RecordingServer for the duration of a ``with`` block (always shut down)."""
    server = RecordingServer(handler, host, tls)
    with serving(server._httpd):
        yield server


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
            "phase": operation,
            "message": message or f"operation {operation.lower()}",
            "syncResult": {"revision": revision},
            "startedAt": "2026-01-01T00:00:00Z",
        }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1", "uid": "0000"},
        "spec": {"project": "cms", "destination": {"server": "https://kubernetes.default.svc"}},
        "status": status,
    }


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
