"""Small builders of Envoy v3 API messages (protobuf JSON) shared by the bootstrap's parts."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from pipelines.config.model import TokenBucket

Json = dict[str, Any]

_T = "type.googleapis.com/envoy."

HCM_TYPE = _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def duration(seconds: float) -> str:
    """Protobuf JSON duration: ``5.0`` -> ``"5s"``, ``0.025`` -> ``"0.025s"`` (exact, deterministic)."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"invalid duration {seconds!r}")
    nanos = round(seconds * 1e9)
    whole, frac = divmod(nanos, 1_000_000_000)
    return f"{whole}s" if frac == 0 else f"{whole}.{frac:09d}".rstrip("0") + "s"


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _socket(address: str, port: int) -> Json:
    return {"socket_address": {"address": address, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _typed(type_name: str, **fields: Any) -> Json:
    return {"@type": _T + type_name, **fields}


def _percent(value: float) -> Json:
    return {"value": value}


def _token_bucket(b: TokenBucket) -> Json:
    return {
        "max_tokens": b.max_tokens,
        "tokens_per_fill": b.tokens_per_fill,
        "fill_interval": duration(b.fill_interval),
    }


def _http2_options(keepalive: bool = True) -> Json:
    h2: Json = {}
    if keepalive:
        # Pings detect a vanished pod (node loss) long before TCP would.
        h2["connection_keepalive"] = {"interval": "30s", "timeout": "5s"}
    return {
        HTTP_OPTIONS_KEY: _typed(
            "extensions.upstreams.http.v3.HttpProtocolOptions",
            explicit_http_config={"http2_protocol_options": h2},
        )
    }


def _router() -> Json:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("extensions.filters.http.router.v3.Router"),
    }
