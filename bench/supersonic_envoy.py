"""BENCHMARK BASELINE ONLY: the plain Envoy proxy that SuperSONIC ships, for data-plane comparisons.

Kept out of the package (nothing deployable may render it) and written out literally rather than
with the renderer's helpers (pipelines/render/envoy/), so a change to the rendered data plane can
never move the baseline it is measured against. bench/dataplane.py and bench/envoy_ab.py run it;
tests/render/test_envoy.py proves that Envoy accepts it and that it proxies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.config.names import ENVOY_UPSTREAM_CLUSTER

Json = dict[str, Any]
_T = "type.googleapis.com/envoy."


def _socket(address: str, port: int) -> Json:
    return {"socket_address": {"address": address, "port_value": port}}


def supersonic_style_config(endpoints: Sequence[tuple[str, int]], listen_port: int, admin_port: int) -> Json:
    """The plain proxy SuperSONIC ships: never deploy it.

    One listener, one STATIC HTTP/2 cluster with LEAST_REQUEST, no route timeout, and none of what
    the rendered bootstrap adds (no health checks, outlier detection, retries, circuit breakers,
    limits, gate or auth). The admin interface is bound to 127.0.0.1 here (SuperSONIC binds
    0.0.0.0) because the benchmark runs on a shared machine.
    """
    if not endpoints:
        raise ValueError("endpoints: at least one (address, port) is needed")
    hcm: Json = {
        "@type": _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "codec_type": "AUTO",
        "route_config": {
            "name": "local_route",
            "virtual_hosts": [
                {
                    "name": "backend",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": ENVOY_UPSTREAM_CLUSTER, "timeout": "0s"},
                        }
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": _T + "extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "admin": {"address": _socket("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "listener_0",
                    "address": _socket("127.0.0.1", listen_port),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": ENVOY_UPSTREAM_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "0.25s",
                    "lb_policy": "LEAST_REQUEST",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": _T + "extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": ENVOY_UPSTREAM_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": _socket(h, port)}} for h, port in endpoints
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }
