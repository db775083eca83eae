"""A real HTTPS file server on 127.0.0.1 with a certificate from a CA made for the test.

It speaks plain HTTP/1.1 over TLS, honours ``Range: bytes=N-`` and can misbehave on request:
drop the connection part-way, answer with errors first, omit Content-Length, redirect, trickle.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.httpd import loopback_server, serving
from tests.support.tls import make_tls_files

BLOCK = 64 * 1024


@dataclass
class Behaviour:
    """What the server serves and how it misbehaves; what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # cut the next response for path after N bytes
    errors: dict[str, list[int]] = field(default_factory=dict)  # statuses to answer first, in order
    no_length: set[str] = field(default_factory=set)  # no Content-Length: body until the connection closes
    redirects: dict[str, str] = field(default_factory=dict)
    trickle: dict[str, float] = field(default_factory=dict)  # send one body byte per this many seconds
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes written per path
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour
        path = self.path
        with b.lock:
            b.requests.append((path, self.headers.get("Range")))
            pending = b.errors.get(path)
            status = pending.pop(0) if pending else None
            drop = b.drop_after.pop(path, None)
        if path in b.redirects:
            self.send_response(302)
            self.send_header("Location", b.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if status is not None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = b.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if path in b.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        limit = len(body) if drop is None else min(drop, len(body))
        if path in b.trickle:
            self._trickle(path, body[:limit], b.trickle[path])
            return
        try:
            for at in range(0, limit, BLOCK):
                piece = body[at : min(at + BLOCK, limit)]
                self.wfile.write(piece)
                with b.lock:
                    b.sent[path] = b.sent.get(path, 0) + len(piece)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
            return
        if drop is not None:
            self.close_connection = True  # a dropped connection: the client saw a short body

    def _trickle(self, path: str, body: bytes, interval: float) -> None:
        """A byte at a time, until the client hangs up: no read ever waits long enough to time out."""
        b = self.server.behaviour
        self.close_connection = True
        try:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                with b.lock:
                    b.sent[path] = b.sent.get(path, 0) + 1
                time.sleep(interval)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return


class _Server(ThreadingHTTPServer):
    behaviour: Behaviour


@dataclass
class HttpsServer:
    url: str
    ca: Path
    behaviour: Behaviour


@contextmanager
def https_server(folder: Path) -> Iterator[HttpsServer]:
    """Serve ``behaviour.files`` over TLS on 127.0.0.1:<free port> until the block ends."""
    tls = make_tls_files(folder)
    httpd = loopback_server(_Server, _Handler, tls)
    httpd.behaviour = Behaviour()
    with serving(httpd):
        yield HttpsServer(f"https://127.0.0.1:{httpd.server_address[1]}", tls.ca_cert, httpd.behaviour)
