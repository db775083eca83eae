"""The bootstrap's listeners: the client gRPC listener (limits, JWT, rate limit, the admission
gate, routes for the client methods only) and the stats listener (two admin paths, GET only)."""

from __future__ import annotations

from pipelines.config.model import Jwt, Placement
from pipelines.config.model import Site as SiteConfig
from pipelines.config.names import (
    ENVOY_HTTP_PREFIX,
    ENVOY_UPSTREAM_CLUSTER,
    TRITON_ADMIN_ENV,
    TRITON_ADMIN_GRPC_HEADER,
)
from pipelines.render.envoy.clusters import ADMIN_CLUSTER, _jwks_cluster_name
from pipelines.render.envoy.gate import LUA_FILTER, _gate_enabled, _gate_metadata, admission_gate_script
from pipelines.render.envoy.proto import HCM_TYPE, Json, _router, _socket, _token_bucket, _typed, duration
from pipelines.render.envoy.tracing import _tracing, tracing_settings

GRPC_SERVICE = "/inference.GRPCInferenceService/"

GATE_ROUTE_PATH = GRPC_SERVICE + "RepositoryIndex"

# The only methods routed to Triton; everything else (model load/unload, shared memory, logging,
# trace settings, and any path Triton may add later) is answered 404 by Envoy, which gRPC clients
# see as UNIMPLEMENTED. The list is what SONIC clients call: CMSSW's HeterogeneousCore/SonicTriton
# TritonService.cc (ServerMetadata, RepositoryIndex, ServerLive, ServerReady, ModelStatistics) and
# TritonClient.cc (ModelMetadata, ModelConfig, ModelInfer, ModelStatistics), plus ModelReady for
# readiness checks. ModelStreamInfer is left out: no SONIC client streams.
CLIENT_METHODS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelConfig",
    "ModelStatistics",
    "ModelInfer",
)

HEALTH_PATHS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")

SESSION_HEADER = "x-session-id"

# The schema's retry conditions, spelled as Envoy's retry_on tokens (gRPC and HTTP conditions).
RETRY_ON = {
    "unavailable": "unavailable",
    "reset": "reset",
    "connect-failure": "connect-failure",
    "resource-exhausted": "resource-exhausted",
    "refused-stream": "refused-stream",
    "cancelled": "cancelled",
    "deadline-exceeded": "deadline-exceeded",
}


def _retry_policy(p: Placement) -> Json | None:
    r = p.envoy.retries
    if r.attempts == 0 or not r.on:
        return None
    policy: Json = {
        "retry_on": ",".join(RETRY_ON[c] for c in r.on),
        "num_retries": r.attempts,
        # A retry goes to another Triton pod than the one that just failed.
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": _typed("extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
            }
        ],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
    }
    if r.per_try_timeout > 0:
        policy["per_try_timeout"] = duration(r.per_try_timeout)
    return policy


def _route_action(p: Placement) -> Json:
    t = p.envoy.timeouts
    action: Json = {
        "cluster": ENVOY_UPSTREAM_CLUSTER,
        "timeout": duration(t.route),  # 0s = no timeout (long inferences)
        # Honour the client's grpc-timeout, but never beyond the configured route timeout.
        "max_stream_duration": {"grpc_timeout_header_max": duration(t.route)},
    }
    retry = _retry_policy(p)
    if retry is not None:
        action["retry_policy"] = retry
    if p.envoy.lb_policy in ("RING_HASH", "MAGLEV"):
        # Consistent hashing needs a key: the client's session header, else its address.
        action["hash_policy"] = [
            {"header": {"header_name": SESSION_HEADER}, "terminal": True},
            {"connection_properties": {"source_ip": True}},
        ]
    return action


def _admin_key_header() -> list[Json]:
    """Triton's management key, read by Envoy from its environment (the namespace's Secret).

    RepositoryIndex belongs to Triton's restricted model-repository protocol, yet SONIC clients
    call it first: this route alone adds the key; Load/Unload have no route at all.
    """
    return [
        {
            "header": {"key": TRITON_ADMIN_GRPC_HEADER, "value": f"%ENVIRONMENT({TRITON_ADMIN_ENV})%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]


def _routes(p: Placement, site: SiteConfig, prometheus_url: str | None, token_path: str) -> list[Json]:
    gate_on = _gate_enabled(p)
    index: Json = {
        "name": "repository-index-admission-gate" if gate_on else "repository-index",
        "match": {"path": GATE_ROUTE_PATH},
        "route": _route_action(p),
        "request_headers_to_add": _admin_key_header(),
    }
    if gate_on:
        index["metadata"] = {
            "filter_metadata": {LUA_FILTER: _gate_metadata(p, site, prometheus_url, token_path)}
        }
    routes: list[Json] = [index]
    paths = [*HEALTH_PATHS, *(GRPC_SERVICE + m for m in CLIENT_METHODS)]
    routes += [{"name": "triton", "match": {"path": path}, "route": _route_action(p)} for path in paths]
    routes.append(
        {
            "name": "not-routed",
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
        }
    )
    if gate_on:
        # Ordinary inference never enters the Lua filter.
        for route in routes[1:]:
            route["typed_per_filter_config"] = {
                LUA_FILTER: _typed("extensions.filters.http.lua.v3.LuaPerRoute", disabled=True)
            }
    return routes


def _jwt_filter(jwt: Jwt) -> Json:
    provider: Json = {
        "issuer": jwt.issuer,
        "audiences": list(jwt.audiences),
        "remote_jwks": {
            "http_uri": {"uri": jwt.jwks_uri, "cluster": _jwks_cluster_name(jwt), "timeout": "5s"},
            "cache_duration": duration(jwt.jwks_cache_for),
            # Fetched once on the main thread for all workers, before the listener opens.
            "async_fetch": {"failed_refetch_duration": "5s"},
            "retry_policy": {"num_retries": 3},
        },
        # The token is checked here; Triton has no use for it, so it is not forwarded.
        "forward": False,
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "clock_skew_seconds": round(jwt.clock_skew),
        "jwt_cache_config": {"jwt_cache_size": 1000},
    }
    rules: list[Json] = [{"match": {"path": path}} for path in HEALTH_PATHS]
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": jwt.provider}})
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": _typed(
            "extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={jwt.provider: provider},
            rules=rules,
        ),
    }


def _http_filters(p: Placement) -> list[Json]:
    filters: list[Json] = []
    requests = p.envoy.rate_limit.requests
    if requests is not None:
        # First: a flood is turned away before any token verification or Prometheus query.
        enabled = {"numerator": 100, "denominator": "HUNDRED"}
        filters.append(
            {
                "name": "envoy.filters.http.local_ratelimit",
                "typed_config": _typed(
                    "extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                    stat_prefix="http_local_rate_limiter",
                    token_bucket=_token_bucket(requests),
                    filter_enabled={"runtime_key": "local_rate_limit_enabled", "default_value": enabled},
                    filter_enforced={"runtime_key": "local_rate_limit_enforced", "default_value": enabled},
                    rate_limited_as_resource_exhausted=True,
                ),
            }
        )
    jwt = p.envoy.auth.jwt if p.envoy.auth else None
    if jwt is not None:
        filters.append(_jwt_filter(jwt))
    if _gate_enabled(p):
        filters.append(
            {
                "name": LUA_FILTER,
                "typed_config": _typed(
                    "extensions.filters.http.lua.v3.Lua",
                    stat_prefix="admission_gate",
                    default_source_code={"inline_string": admission_gate_script()},
                ),
            }
        )
    filters.append(_router())
    return filters


def _access_log() -> list[Json]:
    fields = {
        "start_time": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(:PATH)%",
        "protocol": "%PROTOCOL%",
        "response_code": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS_NUMBER%",
        "response_flags": "%RESPONSE_FLAGS%",
        "bytes_received": "%BYTES_RECEIVED%",
        "bytes_sent": "%BYTES_SENT%",
        "duration_ms": "%DURATION%",
        "upstream_service_time_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        "upstream_host": "%UPSTREAM_HOST%",
        "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "user_agent": "%REQ(USER-AGENT)%",
        "route": "%ROUTE_NAME%",
    }
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": _typed(
                "extensions.access_loggers.stream.v3.StdoutAccessLog", log_format={"json_format": fields}
            ),
        }
    ]


def _grpc_listener(
    p: Placement,
    site: SiteConfig,
    *,
    listen_address: str,
    listen_port: int,
    prometheus_url: str | None,
    token_path: str,
) -> Json:
    e = p.envoy
    hcm: Json = {
        "@type": HCM_TYPE,
        "stat_prefix": ENVOY_HTTP_PREFIX,
        "codec_type": "HTTP2",  # gRPC
        "use_remote_address": True,
        # Resolve "..", "//" and %2F before routing and JWT rules see the path: no way around the
        # health-check exemption or the gate's route by spelling a path differently.
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "common_http_protocol_options": {"idle_timeout": duration(e.timeouts.idle)},
        "route_config": {
            "name": ENVOY_UPSTREAM_CLUSTER,
            "virtual_hosts": [
                {
                    "name": ENVOY_UPSTREAM_CLUSTER,
                    "domains": ["*"],
                    "routes": _routes(p, site, prometheus_url, token_path),
                }
            ],
        },
        "http_filters": _http_filters(p),
    }
    if tracing_settings(p) is not None:
        hcm["tracing"] = _tracing(p)
    if e.access_log:
        hcm["access_log"] = _access_log()

    listener: Json = {"name": "grpc", "address": _socket(listen_address, listen_port)}
    if e.rate_limit.connections is not None:
        # Token bucket on NEW connections: excess connections are closed at accept time.
        listener["listener_filters"] = [
            {
                "name": "envoy.filters.listener.local_ratelimit",
                "typed_config": _typed(
                    "extensions.filters.listener.local_ratelimit.v3.LocalRateLimit",
                    stat_prefix="listener_local_rate_limiter",
                    token_bucket=_token_bucket(e.rate_limit.connections),
                ),
            }
        ]
    listener["filter_chains"] = [
        {
            "filters": [
                {
                    "name": "envoy.filters.network.connection_limit",
                    "typed_config": _typed(
                        "extensions.filters.network.connection_limit.v3.ConnectionLimit",
                        stat_prefix="client_connections",
                        max_connections=e.max_connections,
                    ),
                },
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm},
            ]
        }
    ]
    return listener


def _stats_listener(listen_address: str, stats_port: int) -> Json:
    """Only ``GET /stats/prometheus`` and ``GET /ready`` reach the admin interface; all else is 404."""
    get_only = [{"name": ":method", "string_match": {"exact": "GET"}}]
    routes: list[Json] = [
        {"match": {"path": path, "headers": get_only}, "route": {"cluster": ADMIN_CLUSTER, "timeout": "5s"}}
        for path in ("/stats/prometheus", "/ready")
    ]
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 404, "body": {"inline_string": "not found\n"}},
        }
    )
    hcm: Json = {
        "@type": HCM_TYPE,
        "stat_prefix": "stats",
        "codec_type": "AUTO",
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "route_config": {
            "name": "stats",
            "virtual_hosts": [{"name": "stats", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [_router()],
    }
    return {
        "name": "stats",
        "address": _socket(listen_address, stats_port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
