"""How the checks talk to a deployment: gRPC through its Envoy, with an optional bearer token.

Every call carries a deadline (``client_timeout``), so an endpoint that accepts a connection
and never answers costs a bounded time, never a hang.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import tritonclient.grpc as triton

from pipelines.config.names import GRPC_TLS_SCHEME

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})$")
# tritonclient's own channel defaults (unbounded message sizes), plus a private subchannel pool:
# without it, every client in one process shares a single TCP connection, and a load probe with
# N "clients" would be one HTTP/2 connection to Envoy instead of N.
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.use_local_subchannel_pool", 1),
)


class EndpointError(ValueError):
    """An endpoint string that is not HOST:PORT (a usage error)."""


TLS_SCHEME = GRPC_TLS_SCHEME  # an endpoint written grpcs://HOST:PORT is reached over TLS


@dataclass(frozen=True)
class Endpoint:
    """Where a deployment answers gRPC (normally its Envoy listener), and how to authenticate.

    ``HOST:PORT`` is plaintext gRPC (an in-cluster Service); ``grpcs://HOST:PORT`` is gRPC over
    TLS, the server's certificate verified against the system's roots (an ingress).
    """

    host: str
    port: int
    token: str | None = None
    timeout: float = 10.0  # per call, seconds
    tls: bool = False

    @classmethod
    def parse(cls, text: str, *, token: str | None = None, timeout: float = 10.0) -> Endpoint:
        """``"127.0.0.1:8001"`` or ``"grpcs://host:443"`` -> Endpoint; raises EndpointError naming what is wrong."""
        stripped = text.strip()
        tls = stripped.startswith(TLS_SCHEME)
        m = _HOST_PORT.match(stripped.removeprefix(TLS_SCHEME))
        if not m or not 0 < int(m["port"]) < 65536:
            raise EndpointError(
                f"endpoint {text!r}: expected HOST:PORT (or grpcs://HOST:PORT for TLS), for example 127.0.0.1:8001"
            )
        return cls(m["host"], int(m["port"]), token, timeout, tls)

    @property
    def url(self) -> str:
        """``host:port``, as gRPC takes it (TLS is a property of the channel, not of this string)."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{TLS_SCHEME if self.tls else ''}{self.url}"

    def headers(self, *, anonymous: bool = False) -> dict[str, str] | None:
        """gRPC metadata for a call: the bearer token unless ``anonymous``."""
        if anonymous or not self.token:
            return None
        return {"authorization": f"Bearer {self.token}"}

    def client(self) -> triton.InferenceServerClient:
        """A new client with its own connection; close it when done."""
        return triton.InferenceServerClient(self.url, ssl=self.tls, channel_args=list(_CHANNEL_OPTIONS))


def describe(exc: BaseException) -> str:
    """A one-line reason from a tritonclient or gRPC error: ``UNAVAILABLE: no healthy upstream``."""
    if isinstance(exc, triton.InferenceServerException):
        status = code_name(exc)
        msg = (exc.message() or "").strip().splitlines()
        text = msg[0] if msg else ""
        return f"{status}: {text}" if status else text or type(exc).__name__
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        return f"{code.name if code else 'RPC error'}: {exc.details() if hasattr(exc, 'details') else exc}"
    return f"{type(exc).__name__}: {exc}"


def code_name(exc: BaseException) -> str:
    """The gRPC status name of a tritonclient error (``UNAUTHENTICATED``), or ``""``."""
    if isinstance(exc, triton.InferenceServerException):
        status = exc.status() or ""
        return str(status).removeprefix("StatusCode.")
    return ""


def infer_headers(endpoint: Endpoint, extra: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """Headers for inference calls: the token plus any ``extra`` metadata."""
    headers = {**(endpoint.headers() or {}), **(extra or {})}
    return headers or None
