"""The bootstrap's clusters: Triton (health checks, outlier detection, circuit breakers, retry
budget) and, when needed, Prometheus (the gate), the JWKS servers, the OpenTelemetry collector and
the admin interface (the stats listener's upstream)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from pipelines.config.model import Jwt, Placement
from pipelines.config.model import Site as SiteConfig
from pipelines.config.names import (
    ENVOY_UPSTREAM_CLUSTER,
    TRITON_GRPC,
    triton_service_host,
)
from pipelines.render.envoy.gate import PROMETHEUS_CLUSTER, _prometheus_url
from pipelines.render.envoy.proto import Json, _http2_options, _is_ip, _percent, _socket, _typed, duration
from pipelines.render.envoy.tracing import OTEL_CLUSTER, tracing_settings

# CA bundle of the Envoy image (distroless and Debian images alike) used to verify upstream TLS.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ADMIN_CLUSTER = "envoy_admin"


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


def _triton_cluster(p: Placement, endpoints: Sequence[tuple[str, int]] | None) -> Json:
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


def _prometheus_cluster(p: Placement, site: SiteConfig, prometheus_url: str | None, ca_bundle: str) -> Json:
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


def _otel_cluster(p: Placement) -> Json:
    tr = tracing_settings(p)
    assert tr is not None and tr.collector is not None  # semantic.monitoring_stack
    host, _, port = tr.collector.rpartition(":")
    return _single_host_cluster(OTEL_CLUSTER, host, int(port), connect_timeout=2.0, http2=True)


def _admin_cluster(admin_port: int) -> Json:
    return _single_host_cluster(ADMIN_CLUSTER, "127.0.0.1", admin_port, connect_timeout=1.0)
