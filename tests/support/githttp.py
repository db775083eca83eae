"""Git repositories over git's *smart* HTTP protocol: the real ``git http-backend`` run as CGI.

Argo CD's repo server (go-git) speaks only the smart protocol (go-git COMPATIBILITY.md: the
"dumb" HTTP protocol is not supported), so a test that lets Argo CD or the pipeline's git read
a repository serves it the way a git hosting service does: ``GET .../info/refs?service=...``
and ``POST .../git-upload-pack`` (or ``git-receive-pack``) answered by ``git http-backend``
(git-http-backend(1)), with the CGI environment that program documents.

Example::

    with GitHttpServer(tmp_path / "served") as server:   # serves every bare repository under it
        git("clone", server.url("sonic-gitops.git"), "copy")
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.httpd import loopback_server

BACKEND_TIMEOUT = 120.0  # seconds for one git http-backend run


class GitHttpServer:
    """Serves the bare repositories under ``root`` over smart HTTP on ``host`` (a free port).

    ``allow_push`` enables ``git-receive-pack`` (git http-backend refuses it to anonymous
    clients unless ``http.receivepack`` is set). ``fail_next`` answers that many of the next
    requests with 503, to exercise a client's retries. ``requests`` records (method, path,
    Authorization header) of everything that arrived.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", *, allow_push: bool = False):
        self.root = root
        self.allow_push = allow_push
        self.fail_next = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._serve(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # host: e.g. the kind network's gateway, which the cluster's nodes reach
        self.httpd = loopback_server(ThreadingHTTPServer, Handler, host=host)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> GitHttpServer:
        return self.__enter__()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout=10)
        self.httpd.server_close()

    def url(self, path: str) -> str:
        """URL of the repository at ``root/path``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/{path}"

    # --- one request ----------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((handler.command, handler.path, handler.headers.get("Authorization")))
            failing = self.fail_next > 0
            self.fail_next -= 1 if failing else 0
        body = _read_body(handler)
        if failing:
            _send(handler, 503, {"Content-Type": "text/plain"}, b"try again later\n")
            return
        parts = urlsplit(handler.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",  # serve every repository, no git-daemon-export-ok needed
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": handler.client_address[0],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        # The client's protocol version request and a compressed request body pass through.
        if handler.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
        if handler.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
        if self.allow_push:
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.receivepack",
                "GIT_CONFIG_VALUE_0": "true",
            }
        proc = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=BACKEND_TIMEOUT,
            check=False,
        )
        # CGI output: header lines, a blank line, the body (git writes CRLF line ends).
        head, blank, content = proc.stdout.partition(b"\r\n\r\n")
        if not blank:
            head, blank, content = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        if proc.returncode != 0 and not proc.stdout:
            status, headers, content = 500, {"Content-Type": "text/plain"}, proc.stderr
        _send(handler, status, headers, content)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, plain or chunked (git sends large pushes with chunked encoding)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()  # the CRLF after each chunk
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(content)))
    handler.end_headers()
    handler.wfile.write(content)
