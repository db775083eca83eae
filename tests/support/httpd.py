"""Threaded HTTP(S) servers on 127.0.0.1 for tests: bound to a free port, always shut down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from tests.support.tls import TlsFiles

S = TypeVar("S", bound=ThreadingHTTPServer)


def loopback_server(
    server_class: type[S],
    handler: type[BaseHTTPRequestHandler],
    tls: TlsFiles | None = None,
    host: str = "127.0.0.1",
) -> S:
    """A server on 127.0.0.1:<free port> (the kernel picks it), over TLS when ``tls`` is given.

    ``host`` binds another local address instead (the kind end-to-end test serves the cluster
    from the kind network's gateway). Handler threads are daemons, so a client that never hangs
    up cannot keep the test alive. Nothing is served until :func:`serving`.
    """
    httpd = server_class((host, 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.server_context().wrap_socket(httpd.socket, server_side=True)
    return httpd


@contextmanager
def serving(httpd: S) -> Iterator[S]:
    """Serve from a thread until the block ends; then stop, close the socket and join the thread."""
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
