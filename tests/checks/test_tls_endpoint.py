"""``grpcs://HOST:PORT``: the checks reach a deployment through its ingress over TLS (issue 10.5).

A real gRPC server with TLS on 127.0.0.1 (certificate from a throw-away CA) answers Triton's
ServerLive; the checks' client must verify the certificate, as it would an ingress's. The client
runs in a subprocess so that gRPC's trust roots can be pointed at the test CA
(``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``) without touching this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from pipelines.checks import Endpoint
from pipelines.checks.connection import EndpointError
from tests.support.tls import TlsFiles, make_tls_files


class Live(service_pb2_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request: Any, context: Any) -> Any:  # the gRPC method name
        return service_pb2.ServerLiveResponse(live=True)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, TlsFiles]]:
    files = make_tls_files(tmp_path / "tls")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Live(), server)
    creds = grpc.ssl_server_credentials([(files.key.read_bytes(), files.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        yield port, files
    finally:
        server.stop(grace=None)


def live(endpoint: str, roots: Path | None) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from pipelines.checks import Endpoint\n"
        "c = Endpoint.parse(sys.argv[1], timeout=5).client()\n"
        "try:\n    print(c.is_server_live(client_timeout=5))\n"
        "except Exception as exc:\n    print('error', type(exc).__name__, exc); sys.exit(1)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    if roots is not None:
        env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(roots)
    return subprocess.run(
        [sys.executable, "-c", code, endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_grpcs_endpoint_speaks_tls_and_verifies_the_certificate(tls_server: tuple[int, TlsFiles]) -> None:
    port, files = tls_server
    ok = live(f"grpcs://localhost:{port}", files.ca_cert)
    assert ok.returncode == 0 and ok.stdout.strip() == "True", ok.stdout + ok.stderr
    # Negative controls: a certificate nobody vouches for, and plaintext to a TLS port, both fail.
    untrusted = live(f"grpcs://localhost:{port}", None)
    assert untrusted.returncode == 1, untrusted.stdout
    plain = live(f"localhost:{port}", files.ca_cert)
    assert plain.returncode == 1, plain.stdout


def test_endpoint_strings() -> None:
    assert Endpoint.parse("grpcs://cms-sonic.nrp-nautilus.io:443") == Endpoint(
        "cms-sonic.nrp-nautilus.io", 443, tls=True
    )
    assert str(Endpoint.parse("grpcs://h:443")) == "grpcs://h:443" and Endpoint.parse("h:8001").tls is False
    with pytest.raises(EndpointError, match=r"grpcs://HOST:PORT"):
        Endpoint.parse("https://h:443")
