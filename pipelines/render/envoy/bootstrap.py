"""The complete Envoy v3 bootstrap for one deployment at one site (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.config.model import Placement
from pipelines.config.model import Site as SiteConfig
from pipelines.config.names import (
    ENVOY_ADMIN,
    ENVOY_GRPC,
    ENVOY_STATS,
    envoy_name,
)
from pipelines.render.envoy.clusters import (
    SYSTEM_CA_BUNDLE,
    _admin_cluster,
    _jwks_cluster,
    _otel_cluster,
    _prometheus_cluster,
    _triton_cluster,
)
from pipelines.render.envoy.gate import PROMETHEUS_TOKEN_PATH, _gate_enabled
from pipelines.render.envoy.listeners import _grpc_listener, _stats_listener
from pipelines.render.envoy.proto import Json, _socket, _typed
from pipelines.render.envoy.tracing import tracing_settings
from pipelines.render.yamlout import dump_as_built

STATS_CONNECTION_ROOM = 64  # connections beyond the client limit, kept for Prometheus and probes


def envoy_config(
    p: Placement,
    site: SiteConfig,
    *,
    endpoints: Sequence[tuple[str, int]] | None = None,
    prometheus_url: str | None = None,
    admin_port: int = ENVOY_ADMIN,
    listen_port: int = ENVOY_GRPC,
    stats_port: int = ENVOY_STATS,
    listen_address: str = "0.0.0.0",
    ca_bundle: str = SYSTEM_CA_BUNDLE,
    prometheus_token_path: str = PROMETHEUS_TOKEN_PATH,
) -> Json:
    """The complete Envoy v3 bootstrap for deployment ``p`` at ``site``.

    Args:
        p: the deployment as it runs at the site.
        site: the site (its Prometheus serves the admission gate).
        endpoints: explicit Triton gRPC addresses (the local stack); None = the headless Service.
        prometheus_url: replaces ``site.prometheus.url`` (the local stack's own Prometheus).
        admin_port, listen_port, stats_port, listen_address: where Envoy listens; the admin
            interface is always bound to 127.0.0.1.
        ca_bundle: CA certificates that verify the JWKS and https Prometheus servers.
        prometheus_token_path: file holding the Prometheus bearer token, when the site needs one.

    Raises:
        ValueError: for inputs the schema cannot rule out (no endpoints, gate without Prometheus,
            a URL the gate or JWT cannot use).

    Example:
        >>> cfg = envoy_config(p, site, endpoints=[("127.0.0.1", 18001)], listen_port=18101)
        >>> cfg["static_resources"]["clusters"][0]["type"]
        'STATIC'
    """
    clusters = [_triton_cluster(p, endpoints)]
    if _gate_enabled(p):
        clusters.append(_prometheus_cluster(p, site, prometheus_url, ca_bundle))
    jwt = p.envoy.auth.jwt if p.envoy.auth else None
    if jwt is not None:
        clusters.append(_jwks_cluster(jwt, ca_bundle))
    if tracing_settings(p) is not None:
        clusters.append(_otel_cluster(p))
    clusters.append(_admin_cluster(admin_port))

    listeners = [
        _grpc_listener(
            p,
            site,
            listen_address=listen_address,
            listen_port=listen_port,
            prometheus_url=prometheus_url,
            token_path=prometheus_token_path,
        ),
        _stats_listener(listen_address, stats_port),
    ]
    return {
        "node": {"id": envoy_name(p), "cluster": envoy_name(p)},
        "admin": {"address": _socket("127.0.0.1", admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
        # Process-wide cap on top of the per-listener limit, with room for scrapes and probes.
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": _typed(
                        "extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        max_active_downstream_connections=p.envoy.max_connections + STATS_CONNECTION_ROOM,
                    ),
                }
            ]
        },
    }


def envoy_yaml(config: Json) -> str:
    """Deterministic YAML of an Envoy bootstrap (keys in the order the renderer built them)."""
    return dump_as_built(config)
