"""The rendered Envoy bootstrap: validated by the real Envoy, structure checked, and run for real."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt as pyjwt
import numpy as np
import numpy.typing as npt
import pytest
from tritonclient.grpc import service_pb2

from bench.supersonic_envoy import supersonic_style_config
from pipelines.config import names
from pipelines.config.checked import load_tree
from pipelines.config.model import Jwt, Placement, TokenBucket
from pipelines.config.model import Site as SiteConfig
from pipelines.config.tree import Tree
from pipelines.render.envoy.bootstrap import envoy_config, envoy_yaml
from pipelines.render.envoy.clusters import ADMIN_CLUSTER
from pipelines.render.envoy.gate import LUA_FILTER, PROMETHEUS_TOKEN_PATH
from pipelines.render.envoy.listeners import CLIENT_METHODS, GATE_ROUTE_PATH
from pipelines.render.envoy.proto import duration
from tests.conftest import FIXTURE
from tests.render.conftest import (
    CannedServer,
    LocalPorts,
    TlsFiles,
    envoy_validate,
    free_port,
    grpc_inference,
    http_get,
)

TREE: Tree = load_tree(FIXTURE)
PLACEMENTS = TREE.placements_at()
IDS = [f"{p.site}/{p.experiment}/{p.name}" for p in PLACEMENTS]
Json = dict[str, Any]


def by_name(name: str, site: str | None = None) -> tuple[Placement, SiteConfig]:
    p = next(p for p in PLACEMENTS if p.name == name and (site is None or p.site == site))
    return p, TREE.sites[p.site]


def with_envoy(p: Placement, **changes: Any) -> Placement:
    """``p`` with some Envoy settings replaced (the typed models are frozen)."""
    return p.model_copy(update={"envoy": p.envoy.model_copy(update=changes)})


def listener(cfg: Json, name: str) -> Json:
    return next(lst for lst in cfg["static_resources"]["listeners"] if lst["name"] == name)


def cluster(cfg: Json, name: str) -> Json:
    return next(c for c in cfg["static_resources"]["clusters"] if c["name"] == name)


def hcm(cfg: Json, name: str = "grpc") -> Json:
    filters = listener(cfg, name)["filter_chains"][0]["filters"]
    return next(
        f["typed_config"] for f in filters if f["name"] == "envoy.filters.network.http_connection_manager"
    )


def routes(cfg: Json, name: str = "grpc") -> list[Json]:
    routes: list[Json] = hcm(cfg, name)["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def proxied(cfg: Json) -> list[Json]:
    """The routes that forward to Triton (not the final 404)."""
    return [r for r in routes(cfg) if "route" in r]


def http_filter(cfg: Json, name: str) -> Json | None:
    return next((f for f in hcm(cfg)["http_filters"] if f["name"] == name), None)


# --- validated by the real Envoy -------------------------------------------------------------------


@pytest.mark.parametrize("explicit", [False, True], ids=["headless-service", "explicit-endpoints"])
@pytest.mark.parametrize("p", PLACEMENTS, ids=IDS)
def test_every_example_passes_envoy_validate(
    p: Placement, explicit: bool, envoy_binary: Path, tmp_path: Path
) -> None:
    endpoints = [("127.0.0.1", 18001), ("127.0.0.2", 18001)] if explicit else None
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_yaml(envoy_config(p, TREE.sites[p.site], endpoints=endpoints)))
    result = envoy_validate(envoy_binary, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_rejects_a_broken_config(envoy_binary: Path, tmp_path: Path) -> None:
    """The validation above can fail: an unknown field is refused."""
    p, site = by_name("minimal")
    cfg = envoy_config(p, site)
    cluster(cfg, "triton")["no_such_field"] = 1
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_yaml(cfg))
    assert envoy_validate(envoy_binary, path).returncode != 0


def test_supersonic_baseline_passes_envoy_validate(envoy_binary: Path, tmp_path: Path) -> None:
    cfg = supersonic_style_config([("127.0.0.1", 18001)], listen_port=18101, admin_port=18901)
    path = tmp_path / "baseline.yaml"
    path.write_text(envoy_yaml(cfg))
    assert envoy_validate(envoy_binary, path).returncode == 0
    triton = cluster(cfg, "triton")
    assert triton["lb_policy"] == "LEAST_REQUEST"
    for absent in ("health_checks", "outlier_detection", "circuit_breakers"):
        assert absent not in triton
    assert "retry_policy" not in str(cfg)


# --- deterministic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", PLACEMENTS, ids=IDS)
def test_rendering_twice_is_byte_identical(p: Placement) -> None:
    site = TREE.sites[p.site]
    assert envoy_yaml(envoy_config(p, site)) == envoy_yaml(envoy_config(p, site))


def test_yaml_has_no_aliases_and_keeps_the_script_readable() -> None:
    p, site = by_name("particlenet", "geddes")
    text = envoy_yaml(envoy_config(p, site))
    assert "&id" not in text and "*id" not in text
    assert "inline_string: |" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5.0, "5s"), (0.025, "0.025s"), (3600, "3600s"), (1.5, "1.5s"), (1e-6, "0.000001s")],
)
def test_duration_format(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# --- upstream cluster ------------------------------------------------------------------------------


def test_cluster_resolves_the_headless_service_by_default() -> None:
    p, site = by_name("particlenet", "geddes")
    triton = cluster(envoy_config(p, site), names.ENVOY_UPSTREAM_CLUSTER)
    assert triton["type"] == "STRICT_DNS"
    [endpoint] = triton["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": names.triton_service_host(p),
        "port_value": names.TRITON_GRPC,
    }


def test_explicit_endpoints_give_a_static_cluster() -> None:
    p, site = by_name("minimal")
    triton = cluster(envoy_config(p, site, endpoints=[("127.0.0.1", 1), ("127.0.0.1", 2)]), "triton")
    assert triton["type"] == "STATIC"
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in triton["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [1, 2]


def test_no_endpoints_is_an_error() -> None:
    p, site = by_name("minimal")
    with pytest.raises(ValueError, match="endpoints"):
        envoy_config(p, site, endpoints=[])


@pytest.mark.parametrize("p", PLACEMENTS, ids=IDS)
def test_upstream_resilience_comes_from_the_config(p: Placement) -> None:
    """Defect 7: HTTP/2, gRPC health checks, outlier detection, circuit breakers, retry budget."""
    e = p.envoy
    triton = cluster(envoy_config(p, TREE.sites[p.site]), "triton")
    assert triton["lb_policy"] == e.lb_policy
    assert triton["connect_timeout"] == duration(e.timeouts.connect)
    options = triton["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in options["explicit_http_config"]
    [hc] = triton["health_checks"]
    assert "grpc_health_check" in hc
    assert (hc["interval"], hc["timeout"]) == (
        duration(e.health_check.interval),
        duration(e.health_check.timeout),
    )
    assert (hc["unhealthy_threshold"], hc["healthy_threshold"]) == (
        e.health_check.unhealthy_threshold,
        e.health_check.healthy_threshold,
    )
    od = triton["outlier_detection"]
    assert od["consecutive_gateway_failure"] == e.outlier_detection.consecutive_errors
    assert od["base_ejection_time"] == duration(e.outlier_detection.base_ejection_time)
    assert od["max_ejection_percent"] == e.outlier_detection.max_ejection_percent
    [cb] = triton["circuit_breakers"]["thresholds"]
    assert (cb["max_connections"], cb["max_pending_requests"], cb["max_requests"]) == (
        e.circuit_breakers.max_connections,
        e.circuit_breakers.max_pending_requests,
        e.circuit_breakers.max_requests,
    )
    assert cb["retry_budget"] == {
        "budget_percent": {"value": e.retries.budget_percent},
        "min_retry_concurrency": e.retries.min_retry_concurrency,
    }


def test_retry_policy_maps_the_conditions_and_avoids_the_failed_pod() -> None:
    p, site = by_name("minimal")
    p = with_envoy(
        p,
        retries=p.envoy.retries.model_copy(
            update={"on": ("unavailable", "refused-stream"), "attempts": 3, "per_try_timeout": 2.5}
        ),
    )
    for route in proxied(envoy_config(p, site)):
        retry = route["route"]["retry_policy"]
        assert retry["retry_on"] == "unavailable,refused-stream"
        assert retry["num_retries"] == 3
        assert retry["per_try_timeout"] == "2.5s"
        assert retry["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


def test_zero_attempts_means_no_retry_policy() -> None:
    p, site = by_name("minimal")
    p = with_envoy(p, retries=p.envoy.retries.model_copy(update={"attempts": 0}))
    assert all("retry_policy" not in r["route"] for r in proxied(envoy_config(p, site)))


def test_route_timeout_zero_means_none_and_caps_grpc_timeout() -> None:
    p, site = by_name("particlenet", "nautilus")  # route timeout 5s at this site
    route = next(r for r in routes(envoy_config(p, site)) if r["name"] == "triton")
    assert route["route"]["timeout"] == "5s"
    assert route["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "5s"}
    p, site = by_name("minimal")
    assert all(r["route"]["timeout"] == "0s" for r in proxied(envoy_config(p, site)))


@pytest.mark.parametrize("policy", ["RING_HASH", "MAGLEV"])
def test_consistent_hashing_gets_a_hash_policy(policy: str) -> None:
    p, site = by_name("minimal")
    cfg = envoy_config(with_envoy(p, lb_policy=policy), site)
    assert cluster(cfg, "triton")["lb_policy"] == policy
    for route in proxied(cfg):
        hashes = route["route"]["hash_policy"]
        assert hashes[0]["header"]["header_name"] == "x-session-id"
        assert hashes[-1] == {"connection_properties": {"source_ip": True}}


def test_other_policies_have_no_hash_policy() -> None:
    p, site = by_name("minimal")
    assert all("hash_policy" not in r["route"] for r in proxied(envoy_config(p, site)))


# --- listener --------------------------------------------------------------------------------------


def test_grpc_listener_basics() -> None:
    p, site = by_name("minimal")
    cfg = envoy_config(p, site)
    grpc_listener = listener(cfg, "grpc")
    assert grpc_listener["address"]["socket_address"] == {
        "address": "0.0.0.0",
        "port_value": names.ENVOY_GRPC,
    }
    manager = hcm(cfg)
    assert manager["stat_prefix"] == names.ENVOY_HTTP_PREFIX
    assert manager["codec_type"] == "HTTP2"
    assert manager["normalize_path"] is True and manager["merge_slashes"] is True
    assert manager["common_http_protocol_options"]["idle_timeout"] == duration(p.envoy.timeouts.idle)
    limit = grpc_listener["filter_chains"][0]["filters"][0]
    assert limit["name"] == "envoy.filters.network.connection_limit"
    assert limit["typed_config"]["max_connections"] == p.envoy.max_connections
    assert hcm(cfg)["http_filters"][-1]["name"] == "envoy.filters.http.router"


def test_connection_and_request_rate_limits_only_when_configured() -> None:
    p, site = by_name("minimal")
    cfg = envoy_config(p, site)
    assert "listener_filters" not in listener(cfg, "grpc")
    assert http_filter(cfg, "envoy.filters.http.local_ratelimit") is None

    bucket = TokenBucket(max_tokens=50, tokens_per_fill=5, fill_interval=0.5)
    limited = with_envoy(
        p, rate_limit=p.envoy.rate_limit.model_copy(update={"connections": bucket, "requests": bucket})
    )
    cfg = envoy_config(limited, site)
    [lf] = listener(cfg, "grpc")["listener_filters"]
    assert lf["name"] == "envoy.filters.listener.local_ratelimit"
    assert lf["typed_config"]["token_bucket"] == {
        "max_tokens": 50,
        "tokens_per_fill": 5,
        "fill_interval": "0.5s",
    }
    rl = http_filter(cfg, "envoy.filters.http.local_ratelimit")
    assert rl is not None
    assert rl["typed_config"]["token_bucket"]["max_tokens"] == 50


def test_tracing_and_access_log_follow_the_config() -> None:
    p, site = by_name("particlenet", "geddes")
    manager = hcm(envoy_config(p, site))
    assert manager["tracing"]["random_sampling"] == {"value": 1.0}  # samplingRate 0.01 = 1 %
    assert manager["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert manager["access_log"][0]["name"] == "envoy.access_loggers.stdout"
    quiet, site = by_name("minimal")
    manager = hcm(envoy_config(with_envoy(quiet, access_log=False), site))
    assert "tracing" not in manager and "access_log" not in manager


# --- JWT (defect 6) --------------------------------------------------------------------------------


def test_jwt_audiences_are_a_list_and_the_provider_name_comes_from_the_config() -> None:
    p, site = by_name("cnn-classifier")
    jwt_cfg = p.envoy.auth.jwt if p.envoy.auth else None
    assert jwt_cfg is not None
    cfg = envoy_config(p, site)
    authn = http_filter(cfg, "envoy.filters.http.jwt_authn")
    assert authn is not None
    providers = authn["typed_config"]["providers"]
    assert list(providers) == ["icecube-keycloak"]
    provider = providers["icecube-keycloak"]
    assert provider["audiences"] == ["icecube-sonic", "iceprod"]
    assert provider["issuer"] == jwt_cfg.issuer
    assert provider["remote_jwks"]["http_uri"]["uri"] == jwt_cfg.jwks_uri
    assert provider["jwt_cache_config"]["jwt_cache_size"] > 0
    rules = authn["typed_config"]["rules"]
    assert [r["match"] for r in rules if "requires" not in r] == [
        {"path": "/grpc.health.v1.Health/Check"},
        {"path": "/grpc.health.v1.Health/Watch"},
    ]
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": {"provider_name": "icecube-keycloak"}}
    # Keys come over TLS with SNI, a verified chain and a verified name.
    jwks = cluster(cfg, provider["remote_jwks"]["http_uri"]["cluster"])
    tls = jwks["transport_socket"]["typed_config"]
    assert tls["sni"] == "keycloak.icecube.wisc.edu"
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": "/etc/ssl/certs/ca-certificates.crt"}
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "keycloak.icecube.wisc.edu"}}
    ]


def test_no_jwt_filter_without_auth() -> None:
    p, site = by_name("minimal")
    assert http_filter(envoy_config(p, site), "envoy.filters.http.jwt_authn") is None


# --- admin and stats (defect 3) --------------------------------------------------------------------


@pytest.mark.parametrize("p", PLACEMENTS, ids=IDS)
def test_admin_listens_only_on_loopback(p: Placement) -> None:
    cfg = envoy_config(p, TREE.sites[p.site])
    assert cfg["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": names.ENVOY_ADMIN,
    }
    ports = {lst["address"]["socket_address"]["port_value"] for lst in cfg["static_resources"]["listeners"]}
    assert names.ENVOY_ADMIN not in ports
    assert ports == {names.ENVOY_GRPC, names.ENVOY_STATS}
    # The only way to the admin interface from outside is the stats listener's two GET routes.
    stats_routes = routes(cfg, "stats")
    proxied = [r for r in stats_routes if r.get("route", {}).get("cluster") == ADMIN_CLUSTER]
    assert sorted(r["match"]["path"] for r in proxied) == ["/ready", "/stats/prometheus"]
    assert all(
        r["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}] for r in proxied
    )
    assert stats_routes[-1]["direct_response"]["status"] == 404
    assert cluster(cfg, ADMIN_CLUSTER)["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"
    ] == {"socket_address": {"address": "127.0.0.1", "port_value": names.ENVOY_ADMIN}}


# --- the admission gate's placement (defect 4) -----------------------------------------------------


GATED = [p for p in PLACEMENTS if p.envoy.admission_gate is not None and p.envoy.admission_gate.enabled]


@pytest.mark.parametrize("p", GATED, ids=[f"{p.site}/{p.name}" for p in GATED])
def test_lua_runs_only_on_repository_index(p: Placement) -> None:
    cfg = envoy_config(p, TREE.sites[p.site])
    assert http_filter(cfg, LUA_FILTER) is not None
    first, *others = routes(cfg)
    assert first["match"] == {"path": GATE_ROUTE_PATH}
    assert LUA_FILTER not in first.get("typed_per_filter_config", {})
    assert others
    for route in others:
        per_route = route["typed_per_filter_config"][LUA_FILTER]
        assert per_route["@type"].endswith("extensions.filters.http.lua.v3.LuaPerRoute")
        assert per_route["disabled"] is True


def test_no_lua_filter_when_the_gate_is_off() -> None:
    p, site = by_name("traccc")
    assert p.envoy.admission_gate is not None and not p.envoy.admission_gate.enabled
    cfg = envoy_config(p, site)
    assert http_filter(cfg, LUA_FILTER) is None
    assert all("typed_per_filter_config" not in r for r in routes(cfg))
    assert "prometheus" not in [c["name"] for c in cfg["static_resources"]["clusters"]]


def test_https_prometheus_is_verified_and_plain_http_stays_plain() -> None:
    p, site = by_name("particlenet", "geddes")  # https://prometheus-af.geddes.rcac.purdue.edu, token
    prom = cluster(envoy_config(p, site), "prometheus")
    tls = prom["transport_socket"]["typed_config"]
    assert tls["sni"] == "prometheus-af.geddes.rcac.purdue.edu"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"].endswith(
        "ca-certificates.crt"
    )
    assert (
        prom["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "port_value"
        ]
        == 443
    )
    p, site = by_name("minimal")  # http://prometheus-server.monitoring.svc:80
    prom = cluster(envoy_config(p, site), "prometheus")
    assert "transport_socket" not in prom


def test_prometheus_token_is_a_file_path_never_a_value() -> None:
    p, site = by_name("particlenet", "geddes")
    assert site.prometheus is not None and site.prometheus.auth is not None
    cfg = envoy_config(p, site)
    meta = routes(cfg)[0]["metadata"]["filter_metadata"][LUA_FILTER]
    assert meta["token_file"] == PROMETHEUS_TOKEN_PATH
    # The token is only ever read by the script at run time: no header value is configured anywhere.
    assert "authorization" not in str(routes(cfg))
    p, site = by_name("minimal")  # no auth at this site
    assert routes(envoy_config(p, site))[0]["metadata"]["filter_metadata"][LUA_FILTER]["token_file"] == ""


def test_gate_without_prometheus_is_an_error() -> None:
    p, site = by_name("minimal")
    with pytest.raises(ValueError, match="declares no Prometheus"):
        envoy_config(p, site.model_copy(update={"prometheus": None}))


# --- real Envoy in front of a real Triton ----------------------------------------------------------


def local_config(p: Placement, site: SiteConfig, triton_port: int, ports: LocalPorts, **kw: Any) -> Json:
    return envoy_config(p, site, endpoints=[("127.0.0.1", triton_port)], **ports.render_kwargs(), **kw)


@pytest.mark.integration
def test_stats_port_serves_metrics_but_not_the_admin_api(run_envoy: Any, triton_server: Any) -> None:
    p, site = by_name("traccc")  # no gate: no Prometheus needed
    ports = LocalPorts.pick()
    env = run_envoy(local_config(p, site, triton_server.grpc_port, ports))
    with grpc_inference(ports.listen) as stub:
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live

    base = f"http://127.0.0.1:{ports.stats}"
    status, body = http_get(f"{base}/stats/prometheus")
    assert status == 200
    assert (
        f'envoy_http_downstream_rq_total{{envoy_http_conn_manager_prefix="{names.ENVOY_HTTP_PREFIX}"}}'
        in body
    )
    assert http_get(f"{base}/ready")[0] == 200
    for path in (
        "/quitquitquit",
        "/config_dump",
        "/clusters",
        "/",
        "/stats",
        "/stats/prometheus/../../quitquitquit",
        "//quitquitquit",
        "/logging?level=trace",
    ):
        for method in ("GET", "POST"):
            assert http_get(base + path, method=method)[0] in (400, 404), (method, path)
    assert http_get(f"{base}/stats/prometheus", method="POST")[0] == 404
    assert http_get(f"{base}/ready", method="POST")[0] == 404
    time.sleep(0.2)
    assert env.proc.poll() is None, "Envoy stopped: /quitquitquit got through"
    assert http_get(f"http://127.0.0.1:{ports.admin}/ready")[0] == 200


@pytest.mark.integration
def test_inference_through_envoy_and_a_dead_pod_is_avoided(run_envoy: Any, triton_server: Any) -> None:
    """Health checks and retries: one endpoint that refuses connections costs no failed request."""
    p, site = by_name("traccc")
    ports = LocalPorts.pick()
    dead = free_port()
    run_envoy(
        envoy_config(
            p,
            site,
            endpoints=[("127.0.0.1", dead), ("127.0.0.1", triton_server.grpc_port)],
            **ports.render_kwargs(),
        )
    )
    with grpc_inference(ports.listen) as stub:
        for _ in range(20):
            reply = stub.ModelInfer(echo_request(np.arange(4, dtype=np.float32)), timeout=10)
            assert np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).tolist() == [0, 1, 2, 3]


@pytest.mark.integration
def test_request_rate_limit_answers_resource_exhausted(run_envoy: Any, triton_server: Any) -> None:
    p, site = by_name("traccc")
    bucket = TokenBucket(max_tokens=2, tokens_per_fill=1, fill_interval=3600)
    p = with_envoy(p, rate_limit=p.envoy.rate_limit.model_copy(update={"requests": bucket}))
    ports = LocalPorts.pick()
    run_envoy(local_config(p, site, triton_server.grpc_port, ports))
    codes = []
    with grpc_inference(ports.listen) as stub:
        for _ in range(4):
            try:
                stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert codes == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ]


@pytest.mark.integration
def test_supersonic_baseline_proxies(run_envoy: Any, triton_server: Any) -> None:
    listen, admin = free_port(), free_port()
    run_envoy(
        supersonic_style_config(
            [("127.0.0.1", triton_server.grpc_port)], listen_port=listen, admin_port=admin
        )
    )
    with grpc_inference(listen) as stub:
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live


def echo_request(values: npt.NDArray[np.float32]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="echo")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "INPUT0", "FP32"
    tensor.shape.extend([len(values)])
    request.raw_input_contents.append(values.astype(np.float32).tobytes())
    return request


# --- JWT against a JWKS served over verified TLS on loopback ---------------------------------------


@pytest.fixture
def jwt_setup(canned_server: Any, tls_ca: TlsFiles) -> Iterator[tuple[CannedServer, Any, str]]:
    """A JWKS server (HTTPS, test CA) and the RSA key whose public half it publishes."""
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "test-key", "alg": "RS256", "use": "sig"})
    server = canned_server(tls_ca)
    server.routes["/realms/sonic/certs"] = (200, json.dumps({"keys": [jwk]}))
    yield server, key, f"https://localhost:{server.port}/realms/sonic"


def mint(key: Any, issuer: str, audience: str, lifetime: float = 300) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "cmssw-job", "iat": now, "exp": now + int(lifetime)}
    return pyjwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-key"})


@pytest.mark.integration
def test_jwt_is_enforced_with_keys_fetched_over_verified_tls(
    run_envoy: Any, triton_server: Any, jwt_setup: tuple[CannedServer, Any, str], tls_ca: TlsFiles
) -> None:
    server, key, issuer = jwt_setup
    p, site = by_name("cnn-classifier")
    auth = Jwt(
        provider="test-realm",
        issuer=issuer,
        jwks_uri=f"{issuer}/certs",
        audiences=("sonic", "other"),
        jwks_cache_for=600,
        clock_skew=5,
    )
    p = with_envoy(
        p, auth=p.envoy.auth.model_copy(update={"jwt": auth}) if p.envoy.auth else None, admission_gate=None
    )
    ports = LocalPorts.pick()
    run_envoy(local_config(p, site, triton_server.grpc_port, ports, ca_bundle=str(tls_ca.ca_cert)))
    assert server.hits("/realms/sonic/certs"), "Envoy never fetched the JWKS"

    def call(
        token: str | None, method: str = "/inference.GRPCInferenceService/ServerLive"
    ) -> grpc.StatusCode:
        metadata = [("authorization", f"Bearer {token}")] if token else []
        channel = grpc.insecure_channel(f"127.0.0.1:{ports.listen}")
        try:
            rpc = channel.unary_unary(
                method, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )
            rpc(b"", timeout=10, metadata=metadata)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return,unused-ignore]
        finally:
            channel.close()

    assert call(None) == grpc.StatusCode.UNAUTHENTICATED
    assert call(mint(key, issuer, "sonic")) == grpc.StatusCode.OK
    assert call(mint(key, issuer, "other")) == grpc.StatusCode.OK  # any of the audiences
    assert call(mint(key, issuer, "somebody-else")) != grpc.StatusCode.OK
    assert call(mint(key, "https://evil.example/realms/sonic", "sonic")) != grpc.StatusCode.OK
    assert call(mint(key, issuer, "sonic", lifetime=-3600)) != grpc.StatusCode.OK
    assert call("not-a-jwt") != grpc.StatusCode.OK
    # The health service is exempt; no path spelling reaches the rest through that exemption.
    assert call(None, "/grpc.health.v1.Health/Check") == grpc.StatusCode.OK
    assert (
        call(None, "/grpc.health.v1.Health/../inference.GRPCInferenceService/ServerLive")
        != grpc.StatusCode.OK
    )
    assert (
        call(None, "/grpc.health.v1.Health/Check/../../inference.GRPCInferenceService/ServerLive")
        != grpc.StatusCode.OK
    )


@pytest.mark.integration
def test_jwks_from_an_untrusted_certificate_is_refused(
    run_envoy: Any, triton_server: Any, jwt_setup: tuple[CannedServer, Any, str]
) -> None:
    """With the system CA bundle, the test CA's certificate does not verify: no keys, no access."""
    _, key, issuer = jwt_setup
    p, site = by_name("cnn-classifier")
    auth = Jwt(
        provider="test-realm",
        issuer=issuer,
        jwks_uri=f"{issuer}/certs",
        audiences=("sonic",),
        jwks_cache_for=600,
        clock_skew=5,
    )
    p = with_envoy(
        p, auth=p.envoy.auth.model_copy(update={"jwt": auth}) if p.envoy.auth else None, admission_gate=None
    )
    ports = LocalPorts.pick()
    run_envoy(local_config(p, site, triton_server.grpc_port, ports))  # default CA bundle
    with grpc_inference(ports.listen) as stub, pytest.raises(grpc.RpcError) as exc:
        stub.ServerLive(
            service_pb2.ServerLiveRequest(),
            timeout=10,
            metadata=[("authorization", f"Bearer {mint(key, issuer, 'sonic')}")],
        )
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- only the client methods reach Triton (issue 11, finding 3) -------------------------------------

ECHO = "echo"


def _management_calls(stub: Any) -> dict[str, Any]:
    """Triton methods a client must never reach through Envoy, each as a thunk."""
    return {
        "LogSettings": lambda **kw: stub.LogSettings(service_pb2.LogSettingsRequest(), timeout=10, **kw),
        "SystemSharedMemoryRegister": lambda **kw: stub.SystemSharedMemoryRegister(
            service_pb2.SystemSharedMemoryRegisterRequest(name="x", key="/x", byte_size=64), timeout=10, **kw
        ),
        "CudaSharedMemoryStatus": lambda **kw: stub.CudaSharedMemoryStatus(
            service_pb2.CudaSharedMemoryStatusRequest(), timeout=10, **kw
        ),
        "RepositoryModelLoad": lambda **kw: stub.RepositoryModelLoad(
            service_pb2.RepositoryModelLoadRequest(model_name=ECHO), timeout=10, **kw
        ),
        "RepositoryModelUnload": lambda **kw: stub.RepositoryModelUnload(
            service_pb2.RepositoryModelUnloadRequest(model_name=ECHO), timeout=10, **kw
        ),
        "TraceSetting": lambda **kw: stub.TraceSetting(service_pb2.TraceSettingRequest(), timeout=10, **kw),
    }


def test_only_client_methods_are_routed() -> None:
    p, site = by_name("traccc")
    paths = [r["match"].get("path") for r in routes(envoy_config(p, site))]
    assert paths[0] == GATE_ROUTE_PATH and paths[-1] is None  # RepositoryIndex first, 404 last
    methods = {path.rsplit("/", 1)[1] for path in paths[1:-1] if path.startswith("/inference.")}
    assert methods == set(CLIENT_METHODS)
    assert routes(envoy_config(p, site))[-1]["direct_response"]["status"] == 404
    assert not any(r["match"].get("prefix") == "/" and "route" in r for r in routes(envoy_config(p, site)))


def test_only_the_repository_index_route_carries_the_admin_key_and_only_by_reference() -> None:
    for p in PLACEMENTS:
        site = TREE.sites[p.site]
        cfg = envoy_config(p, site)
        with_key = [r for r in routes(cfg) if "request_headers_to_add" in r]
        assert [r["match"]["path"] for r in with_key] == [GATE_ROUTE_PATH]
        (header,) = with_key[0]["request_headers_to_add"]
        assert header["header"] == {
            "key": names.TRITON_ADMIN_GRPC_HEADER,
            "value": f"%ENVIRONMENT({names.TRITON_ADMIN_ENV})%",
        }
        assert header["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"  # a client cannot pick the value


@pytest.mark.integration
def test_management_api_is_not_reachable_through_envoy(run_envoy: Any, triton_server: Any) -> None:
    """Real Envoy in front of a real Triton whose management protocols need the admin key."""
    p, site = by_name("traccc")
    ports = LocalPorts.pick()
    env = run_envoy(local_config(p, site, triton_server.grpc_port, ports))
    with grpc_inference(ports.listen) as stub:
        # What SONIC clients call works, RepositoryIndex included (Envoy adds the key for it).
        assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelReady(service_pb2.ModelReadyRequest(name=ECHO), timeout=10).ready
        assert stub.ServerMetadata(service_pb2.ServerMetadataRequest(), timeout=10).name
        assert stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=ECHO), timeout=10).name == ECHO
        assert stub.ModelConfig(service_pb2.ModelConfigRequest(name=ECHO), timeout=10).config.name == ECHO
        stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name=ECHO), timeout=10)
        index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
        assert [m.name for m in index.models] == [ECHO]
        reply = stub.ModelInfer(echo_request(np.arange(3, dtype=np.float32)), timeout=10)
        assert np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).tolist() == [0, 1, 2]

        forwarded = env.stat("cluster.triton.upstream_rq_total")
        # Everything else is answered by Envoy itself (404 = UNIMPLEMENTED), even with a guessed key.
        guessed = [(names.TRITON_ADMIN_GRPC_HEADER, "guess")]
        for name, call in _management_calls(stub).items():
            for metadata in (None, guessed):
                with pytest.raises(grpc.RpcError) as err:
                    call(metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, name
        assert env.stat("cluster.triton.upstream_rq_total") == forwarded, "a management call reached Triton"


@pytest.mark.integration
def test_triton_refuses_management_calls_without_the_key(triton_server: Any) -> None:
    """Defense in depth: a caller that bypasses Envoy (another pod) still needs the Secret's key."""
    from tests.render.conftest import TRITON_ADMIN_KEY

    with grpc_inference(triton_server.grpc_port) as stub:
        for name, call in _management_calls(stub).items():
            if name.startswith("Repository"):
                continue  # checked below without changing the server's models
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert "restricted" in (err.value.details() or ""), name
        with pytest.raises(grpc.RpcError) as err:
            stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
        assert "restricted" in (err.value.details() or "")
        # The flag's syntax is what Triton expects: with the key the same calls are served.
        key = [(names.TRITON_ADMIN_GRPC_HEADER, TRITON_ADMIN_KEY)]
        stub.LogSettings(service_pb2.LogSettingsRequest(), timeout=10, metadata=key)
        assert stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10, metadata=key).models
