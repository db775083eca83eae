"""The Envoy bootstrap for one deployment at one site, as data.

:func:`envoy_config` is pure and deterministic: the typed configuration in, the complete Envoy v3
bootstrap out (a dict; :func:`envoy_yaml` dumps it). The same function renders the ConfigMap that
runs in the cluster (Triton reached through its headless Service) and the config of the local
stack (explicit ``endpoints`` on 127.0.0.1). Design and the SuperSONIC defects each part fixes:
``docs/envoy.md``.

Layout of the result::

    admin             127.0.0.1:admin_port only (never reachable from outside the pod)
    listener grpc     listen_port: connection limit, connection token bucket, HTTP/2 connection
                      manager -> jwt_authn, local_ratelimit, admission gate (Lua), router;
                      routes: only the client gRPC methods (CLIENT_METHODS), all else 404
    listener stats    stats_port: only GET /stats/prometheus and GET /ready, proxied to the admin
    cluster triton    HTTP/2, LB policy, gRPC health checks, outlier detection, circuit breakers,
                      retry budget
    cluster prometheus / jwks_<provider> / opentelemetry_collector / envoy_admin   when needed
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from pipelines.config.model import EnvoyTracing, Jwt, SiteDeployment, TokenBucket
from pipelines.config.model import Site as SiteConfig
from pipelines.render import names
from pipelines.render.metrics import gate_query
from pipelines.render.names import (
    ENVOY_ADMIN,
    ENVOY_GRPC,
    ENVOY_HTTP_PREFIX,
    ENVOY_STATS,
    ENVOY_UPSTREAM_CLUSTER,
    TRITON_ADMIN_ENV,
    TRITON_ADMIN_GRPC_HEADER,
    TRITON_GRPC,
    envoy_name,
    triton_service_host,
)
from pipelines.render.yamlout import dump_as_built

__all__ = [
    "ADMIN_CLUSTER",
    "CLIENT_METHODS",
    "GATE_ROUTE_PATH",
    "LUA_FILTER",
    "PROMETHEUS_CLUSTER",
    "PROMETHEUS_TOKEN_PATH",
    "SYSTEM_CA_BUNDLE",
    "admission_gate_script",
    "envoy_config",
    "envoy_yaml",
    "supersonic_style_config",
]

Json = dict[str, Any]

# Where the Envoy pod finds the Prometheus bearer token: the Kubernetes renderer mounts the site's
# prometheus.auth.secretRef Secret (key -> file "token") here. The token itself never enters the config.
PROMETHEUS_TOKEN_PATH = "/etc/sonic/prometheus/token"
# CA bundle of the Envoy image (distroless and Debian images alike) used to verify upstream TLS.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

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
LUA_FILTER = "envoy.filters.http.lua"  # filter name = per-route config key = route metadata namespace
PROMETHEUS_CLUSTER = "prometheus"
ADMIN_CLUSTER = "envoy_admin"
OTEL_CLUSTER = "opentelemetry_collector"
DEFAULT_SAMPLING_RATE = 0.01  # the schema's envoy.tracing.samplingRate default (a test holds them equal)
HEALTH_PATHS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")
SESSION_HEADER = "x-session-id"
STATS_CONNECTION_ROOM = 64  # connections beyond the client limit, kept for Prometheus and probes

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

_T = "type.googleapis.com/envoy."
HCM_TYPE = _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


# --- small helpers ---------------------------------------------------------------------------------


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


def _upstream_tls(host: str, ca_bundle: str) -> Json:
    """TLS towards an external service: SNI set, certificate chain AND name verified."""
    san_type = "IP_ADDRESS" if _is_ip(host) else "DNS"
    context: Json = {
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "validation_context": {
                "trusted_ca": {"filename": ca_bundle},
                "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}],
            },
        }
    }
    if not _is_ip(host):
        context["sni"] = host
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": _typed("extensions.transport_sockets.tls.v3.UpstreamTlsContext", **context),
    }


def _single_host_cluster(
    name: str, host: str, port: int, *, connect_timeout: float, tls_ca: str | None = None, http2: bool = False
) -> Json:
    """A cluster for one external service: STATIC for an IP literal, LOGICAL_DNS for a name."""
    cluster: Json = {
        "name": name,
        "type": "STATIC" if _is_ip(host) else "LOGICAL_DNS",
        "connect_timeout": duration(connect_timeout),
    }
    if not _is_ip(host):
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    cluster["load_assignment"] = {
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
    }
    if http2:
        cluster["typed_extension_protocol_options"] = _http2_options(keepalive=False)
    if tls_ca is not None:
        cluster["transport_socket"] = _upstream_tls(host, tls_ca)
    return cluster


def _router() -> Json:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("extensions.filters.http.router.v3.Router"),
    }


# Read once, on import: rendering reads no files.
_ADMISSION_GATE_LUA = (
    resources.files("pipelines.render").joinpath("lua/admission_gate.lua").read_text(encoding="utf-8")
)


def admission_gate_script() -> str:
    """The admission gate's Lua source (package data, identical for every deployment)."""
    return _ADMISSION_GATE_LUA


# --- the gRPC listener -----------------------------------------------------------------------------


def _retry_policy(p: SiteDeployment) -> Json | None:
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


def _route_action(p: SiteDeployment) -> Json:
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


def _gate_metadata(p: SiteDeployment, site: SiteConfig, prometheus_url: str | None, token_path: str) -> Json:
    gate = p.envoy.admission_gate
    assert gate is not None
    url = urlsplit(_prometheus_url(p, site, prometheus_url))
    base = url.path.rstrip("/")
    uses_token = names.prometheus_auth(p, site) is not None
    return {
        "threshold": gate.threshold,
        "cache_for_ms": round(gate.cache_for * 1000),
        "query_timeout_ms": _millis(gate.query_timeout),
        "on_prometheus_error": gate.on_prometheus_error,
        "cluster": PROMETHEUS_CLUSTER,
        "path": f"{base}/api/v1/query?query={quote(gate_query(p), safe='')}",
        "authority": url.netloc.rsplit("@", 1)[-1],
        "token_file": token_path if uses_token else "",
    }


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


def _routes(p: SiteDeployment, site: SiteConfig, prometheus_url: str | None, token_path: str) -> list[Json]:
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


def _http_filters(p: SiteDeployment) -> list[Json]:
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


def tracing_settings(p: SiteDeployment) -> EnvoyTracing | None:
    """Envoy's tracing as rendered: with the in-namespace stack, to its collector (at the
    declared sampling rate, else the schema's default of 1 %)."""
    tr = p.envoy.tracing
    if p.monitoring.tracing.enabled:
        rate = tr.sampling_rate if tr is not None else DEFAULT_SAMPLING_RATE
        return EnvoyTracing(sampling_rate=rate, collector=names.otel_collector_grpc(p))
    return tr


def _tracing(p: SiteDeployment) -> Json:
    tr = tracing_settings(p)
    assert tr is not None
    return {
        "random_sampling": _percent(round(tr.sampling_rate * 100, 6)),
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed(
                "config.trace.v3.OpenTelemetryConfig",
                grpc_service={"envoy_grpc": {"cluster_name": OTEL_CLUSTER}, "timeout": "1s"},
                service_name=envoy_name(p),
            ),
        },
    }


def _grpc_listener(
    p: SiteDeployment,
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


# --- the stats listener ----------------------------------------------------------------------------


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


# --- clusters --------------------------------------------------------------------------------------


def _triton_cluster(p: SiteDeployment, endpoints: Sequence[tuple[str, int]] | None) -> Json:
    e = p.envoy
    if endpoints is None:
        hosts = [(triton_service_host(p), TRITON_GRPC)]
    else:
        hosts = list(endpoints)
        if not hosts:
            raise ValueError("endpoints: at least one (address, port) is needed")
    static = all(_is_ip(h) for h, _ in hosts)
    cluster: Json = {
        "name": ENVOY_UPSTREAM_CLUSTER,
        # The headless Service resolves to every ready pod IP: STRICT_DNS keeps one host per pod.
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": duration(e.timeouts.connect),
        "lb_policy": e.lb_policy,
    }
    if not static:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    cluster.update(
        {
            "typed_extension_protocol_options": _http2_options(),
            "load_assignment": {
                "cluster_name": ENVOY_UPSTREAM_CLUSTER,
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": _socket(h, port)}} for h, port in hosts]}
                ],
            },
            # A draining pod leaves DNS while its health check still passes: drop it at once.
            "ignore_health_on_host_removal": True,
            "health_checks": [
                {
                    "timeout": duration(e.health_check.timeout),
                    "interval": duration(e.health_check.interval),
                    "unhealthy_threshold": e.health_check.unhealthy_threshold,
                    "healthy_threshold": e.health_check.healthy_threshold,
                    # Keep checking at the same pace while idle: a fresh pod is usable sooner.
                    "no_traffic_interval": duration(e.health_check.interval),
                    "grpc_health_check": {},
                }
            ],
            "outlier_detection": {
                # Pod-level failures (UNAVAILABLE, resets, refused connections) eject a pod;
                # application errors caused by one client's bad input do not.
                "consecutive_gateway_failure": e.outlier_detection.consecutive_errors,
                "enforcing_consecutive_gateway_failure": 100,
                "enforcing_consecutive_5xx": 0,
                "enforcing_success_rate": 0,
                "interval": duration(e.outlier_detection.interval),
                "base_ejection_time": duration(e.outlier_detection.base_ejection_time),
                "max_ejection_percent": e.outlier_detection.max_ejection_percent,
            },
            "circuit_breakers": {
                "thresholds": [
                    {
                        "priority": "DEFAULT",
                        "max_connections": e.circuit_breakers.max_connections,
                        "max_pending_requests": e.circuit_breakers.max_pending_requests,
                        "max_requests": e.circuit_breakers.max_requests,
                        # Replaces the fixed max_retries: retries stay a share of live traffic.
                        "retry_budget": {
                            "budget_percent": _percent(e.retries.budget_percent),
                            "min_retry_concurrency": e.retries.min_retry_concurrency,
                        },
                    }
                ]
            },
            # Never spread traffic onto pods known to be unhealthy ("panic mode"): a refused
            # request lets the SONIC client fall back to CPU, a hung one does not.
            "common_lb_config": {"healthy_panic_threshold": _percent(0.0)},
        }
    )
    return cluster


def _prometheus_url(p: SiteDeployment, site: SiteConfig, override: str | None) -> str:
    if override is not None:
        return override
    url = names.prometheus_url(p, site)
    if url is None:
        raise ValueError(f"site {site.name!r} declares no Prometheus, which the admission gate needs")
    return url


def _prometheus_cluster(
    p: SiteDeployment, site: SiteConfig, prometheus_url: str | None, ca_bundle: str
) -> Json:
    url = urlsplit(_prometheus_url(p, site, prometheus_url))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"Prometheus URL {url.geturl()!r}: expected http(s)://host[:port][/path]")
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    gate = p.envoy.admission_gate
    assert gate is not None
    return _single_host_cluster(
        PROMETHEUS_CLUSTER,
        url.hostname,
        port,
        connect_timeout=min(gate.query_timeout, p.envoy.timeouts.connect),
        tls_ca=ca_bundle if tls else None,
    )


def _jwks_cluster_name(jwt: Jwt) -> str:
    return f"jwks_{jwt.provider}"


def _jwks_cluster(jwt: Jwt, ca_bundle: str) -> Json:
    uri = urlsplit(jwt.jwks_uri)
    if uri.scheme != "https" or not uri.hostname:
        raise ValueError(f"jwksUri {jwt.jwks_uri!r}: keys must be fetched over https")
    return _single_host_cluster(
        _jwks_cluster_name(jwt), uri.hostname, uri.port or 443, connect_timeout=5.0, tls_ca=ca_bundle
    )


def _otel_cluster(p: SiteDeployment) -> Json:
    tr = tracing_settings(p)
    assert tr is not None and tr.collector is not None  # semantic.monitoring_stack
    host, _, port = tr.collector.rpartition(":")
    return _single_host_cluster(OTEL_CLUSTER, host, int(port), connect_timeout=2.0, http2=True)


def _admin_cluster(admin_port: int) -> Json:
    return _single_host_cluster(ADMIN_CLUSTER, "127.0.0.1", admin_port, connect_timeout=1.0)


def _gate_enabled(p: SiteDeployment) -> bool:
    gate = p.envoy.admission_gate
    return gate is not None and gate.enabled


# --- public ----------------------------------------------------------------------------------------


def envoy_config(
    p: SiteDeployment,
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


def supersonic_style_config(endpoints: Sequence[tuple[str, int]], listen_port: int, admin_port: int) -> Json:
    """BENCHMARK BASELINE ONLY: the plain proxy that SuperSONIC ships, for data-plane comparisons.

    One listener, one STATIC HTTP/2 cluster with LEAST_REQUEST, no route timeout, and none of what
    :func:`envoy_config` adds (no health checks, outlier detection, retries, circuit breakers,
    limits, gate or auth). Never deploy it. The admin interface is bound to 127.0.0.1 here
    (SuperSONIC binds 0.0.0.0) because the benchmark runs on a shared machine.
    """
    if not endpoints:
        raise ValueError("endpoints: at least one (address, port) is needed")
    hcm: Json = {
        "@type": HCM_TYPE,
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
        "http_filters": [_router()],
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
                    "typed_extension_protocol_options": _http2_options(keepalive=False),
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
