"""The admission gate (defect 4): its Lua parser in-process (LuaJIT via lupa), then the whole gate
in a real Envoy in front of a real Triton, asking a local fake Prometheus."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from pipelines.config.model import AdmissionGate, Placement, PrometheusAuth, SecretKeyRef
from pipelines.config.model import Site as SiteConfig
from pipelines.render.envoy.bootstrap import envoy_config
from pipelines.render.envoy.gate import admission_gate_script
from pipelines.render.metrics import load_query
from tests.render.conftest import (
    EnvoyProcess,
    FakePrometheus,
    LocalPorts,
    TlsFiles,
    free_port,
    grpc_inference,
)
from tests.render.test_envoy import by_name, echo_request, with_envoy


def vector(*values: str, ts: float | int = 1712345678.123) -> str:
    series = [{"metric": {"service": f"s{i}"}, "value": [ts, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}})


# --- the parser, in LuaJIT ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gate_lua() -> Any:
    lupa = pytest.importorskip("lupa.luajit21", reason="lupa (LuaJIT) is not installed")
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute(admission_gate_script())
    # Test-only helper: Lua identity of the decoder's null sentinel (Python wrappers are not identical).
    runtime.execute(
        "sonic_admission_gate.is_null = function(v) return rawequal(v, sonic_admission_gate.null) end"
    )
    return runtime.globals().sonic_admission_gate


def parse(gate: Any, body: str) -> tuple[float | None, str | None]:
    result = gate.parse_load(body)
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (vector("12.5", ts=1712345678), 12.5),  # integer timestamp (SuperSONIC's regex failed here)
        (vector("12.5", ts=1712345678.123), 12.5),  # float timestamp
        (vector("7"), 7.0),
        (vector("1e3"), 1000.0),
        (vector("-0.5"), -0.5),
        (vector("+Inf"), math.inf),  # infinitely loaded: a number, above any threshold
        (vector("-Inf"), -math.inf),
        (vector("3", "NaN", "9"), 9.0),  # the most loaded usable series counts
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "scalar", "result": [1712345678, "4.25"]}}
            ),
            4.25,
        ),
        (
            ' \n{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"\\u00e9\\"x\\\\"},"value":[1,"2"]}]}}\t',
            2.0,
        ),
    ],
)
def test_parser_reads_usable_answers(gate_lua: Any, body: str, expected: float) -> None:
    value, why = parse(gate_lua, body)
    assert why is None
    assert value == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (vector("NaN"), "no series has a numeric value"),
        (vector(), "empty result"),
        (
            json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}),
            "status error",
        ),
        (json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}), "resultType"),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, 5]}]}}
            ),
            "numeric",
        ),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"value": ["x", "5"]}]}}
            ),
            "numeric",
        ),
        (vector("0x10"), "numeric"),
        (vector("12abc"), "numeric"),
        ("", "empty body"),
        ("garbage", "invalid JSON"),
        ("<html>502 Bad Gateway</html>", "invalid JSON"),
        (vector("12.5")[:-3], "invalid JSON"),  # truncated
        (vector("12.5") + "x", "invalid JSON"),  # trailing garbage
        ("[" * 5000, "invalid JSON"),  # deep nesting must not blow the stack
        (
            '{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1\x01"]}]}}',
            "invalid JSON",
        ),
        ("null", "not a JSON object"),
        ("[1,2]", "status"),
        ('"just a string"', "not a JSON object"),
        (" " * 2_000_000, "too large"),
    ],
)
def test_parser_rejects_unusable_answers(gate_lua: Any, body: str, reason: str) -> None:
    value, why = parse(gate_lua, body)
    assert value is None
    assert why is not None and reason in why


json_text = st.text(st.characters(codec="utf-8"), max_size=12)  # no lone surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=20,
)


def same(gate: Any, py: Any, lua: Any) -> bool:
    """Python's JSON value ``py`` equals the Lua decoder's ``lua`` (null is the decoder's sentinel)."""
    if py is None:
        return bool(gate.is_null(lua))
    if isinstance(py, bool):
        return lua is py
    if isinstance(py, int | float):
        return isinstance(lua, int | float) and not isinstance(lua, bool) and lua == py
    if isinstance(py, str):
        return isinstance(lua, str) and lua == py
    items = dict(lua.items())
    if isinstance(py, list):
        return sorted(items) == list(range(1, len(py) + 1)) and all(
            same(gate, v, items[i + 1]) for i, v in enumerate(py)
        )
    return set(items) == set(py) and all(same(gate, v, items[k]) for k, v in py.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, ascii_only=st.booleans())
def test_decoder_reads_back_what_python_json_writes(gate_lua: Any, value: Any, ascii_only: bool) -> None:
    assert same(gate_lua, value, gate_lua.decode(json.dumps(value, ensure_ascii=ascii_only)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    load=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    ts=st.integers(0, 2**31) | st.floats(0, 2**31, allow_nan=False),
)
def test_any_number_prometheus_prints_is_read_back(gate_lua: Any, load: float, ts: float) -> None:
    for text in (repr(load), f"{load:.6e}", f"{load:g}"):
        value, why = parse(gate_lua, vector(text, ts=ts))
        assert why is None
        assert value == pytest.approx(float(text))


# --- the gate in a real Envoy ---------------------------------------------------------------------

# Small, fast gate settings for the tests; the threshold sits between "low" (5) and "high" (500).
GATE = AdmissionGate(enabled=True, threshold=100, cache_for=60, query_timeout=0.5, on_prometheus_error="open")


def gated(gate: AdmissionGate = GATE) -> tuple[Placement, SiteConfig]:
    p, site = by_name("minimal")
    return with_envoy(p, admission_gate=gate), site


def start(
    run_envoy: Any, triton: Any, p: Placement, site: SiteConfig, prometheus_url: str, **kw: Any
) -> LocalPorts:
    ports, _ = start_envoy(run_envoy, triton, p, site, prometheus_url, **kw)
    return ports


def start_envoy(
    run_envoy: Any, triton: Any, p: Placement, site: SiteConfig, prometheus_url: str, **kw: Any
) -> tuple[LocalPorts, EnvoyProcess]:
    """Envoy with the deployment's rendered config, in front of ``triton``, asking ``prometheus_url``."""
    ports = LocalPorts.pick()
    cfg = envoy_config(
        p,
        site,
        endpoints=[("127.0.0.1", triton.grpc_port)],
        prometheus_url=prometheus_url,
        **ports.render_kwargs(),
        **kw,
    )
    return ports, run_envoy(cfg)


def repository_index(port: int) -> grpc.StatusCode:
    with grpc_inference(port) as stub:
        try:
            reply = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return,unused-ignore]
    assert [m.name for m in reply.models] == ["echo"]
    return grpc.StatusCode.OK


@pytest.mark.integration
def test_below_threshold_new_clients_are_admitted(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any
) -> None:
    prom: FakePrometheus = fake_prometheus()
    prom.answer(vector("5", ts=1712345678))
    p, site = gated()
    ports = start(run_envoy, triton_server, p, site, prom.url())
    assert repository_index(ports.listen) == grpc.StatusCode.OK
    [seen] = prom.queries()
    assert seen.query == {"query": [load_query(p)]}  # the deployment's load metric, exactly
    assert "authorization" not in seen.headers


@pytest.mark.integration
def test_above_threshold_new_clients_are_refused_but_inference_goes_on(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any
) -> None:
    prom: FakePrometheus = fake_prometheus()
    prom.answer(vector("500", ts=1712345678.5))
    p, site = gated()
    ports = start(run_envoy, triton_server, p, site, prom.url())
    with grpc_inference(ports.listen) as stub:
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "overloaded" in (refused.value.details() or "")
        # Clients already running keep working, and never trigger a Prometheus query.
        for _ in range(5):
            reply = stub.ModelInfer(echo_request(np.array([1.5, 2.5], dtype=np.float32)), timeout=10)
            assert np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).tolist() == [1.5, 2.5]
            assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
    assert len(prom.queries()) == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (vector("150", ts=1712345678), grpc.StatusCode.UNAVAILABLE),  # integer timestamp
        (vector("50", ts=1712345678.781), grpc.StatusCode.OK),  # float timestamp
        (vector("+Inf"), grpc.StatusCode.UNAVAILABLE),
        (vector("100"), grpc.StatusCode.OK),  # at the threshold is not above it
    ],
    ids=["int-timestamp-above", "float-timestamp-below", "plus-inf", "at-threshold"],
)
def test_usable_answers_decide(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any, answer: str, expected: grpc.StatusCode
) -> None:
    prom: FakePrometheus = fake_prometheus()
    prom.answer(answer)
    p, site = gated()
    ports = start(run_envoy, triton_server, p, site, prom.url())
    assert repository_index(ports.listen) == expected


UNUSABLE = {
    "nan": (vector("NaN"), 200),
    "empty-result": (vector(), 200),
    "http-500": ('{"status":"error","error":"boom"}', 500),
    "status-error": ('{"status":"error","errorType":"timeout","error":"query timed out"}', 200),
    "garbage": ("<html>not prometheus</html>", 200),
    "unreachable": ("", 0),
    "too-slow": (vector("5"), -1),
}


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["open", "closed"])
@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unknown_load_fails_open_or_closed_as_configured(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any, case: str, mode: str
) -> None:
    body, status = UNUSABLE[case]
    prom: FakePrometheus = fake_prometheus()
    url = prom.url()
    if status == 0:
        url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    elif status == -1:
        prom.answer(body)
        prom.delay = 2.0  # longer than the gate's query timeout (0.5 s)
    else:
        prom.answer(body, status)
    p, site = gated(GATE.model_copy(update={"on_prometheus_error": mode}))
    ports = start(run_envoy, triton_server, p, site, url)
    expected = grpc.StatusCode.OK if mode == "open" else grpc.StatusCode.UNAVAILABLE
    assert repository_index(ports.listen) == expected
    assert repository_index(ports.listen) == expected  # the failure is cached as well
    if status != 0:
        assert len(prom.queries()) == 1


@pytest.mark.integration
def test_answers_are_cached_within_cache_for(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any
) -> None:
    """GATE caches for 60 s, far longer than five calls take on any machine: one query serves all."""
    prom: FakePrometheus = fake_prometheus()
    prom.answer(vector("5"))
    p, site = gated()
    ports = start(run_envoy, triton_server, p, site, prom.url())
    for _ in range(5):
        assert repository_index(ports.listen) == grpc.StatusCode.OK
    assert len(prom.queries()) == 1
    # Within the window a changed load is not seen: the cached answer still admits.
    prom.answer(vector("500"))
    assert repository_index(ports.listen) == grpc.StatusCode.OK
    assert len(prom.queries()) == 1


@pytest.mark.integration
def test_after_cache_for_the_next_client_asks_again(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any
) -> None:
    """A short window, waited out: the next new client asks again and sees the new load."""
    prom: FakePrometheus = fake_prometheus()
    prom.answer(vector("5"))
    p, site = gated(GATE.model_copy(update={"cache_for": 1.0}))
    ports = start(run_envoy, triton_server, p, site, prom.url())
    assert repository_index(ports.listen) == grpc.StatusCode.OK
    prom.answer(vector("500"))
    time.sleep(1.5)  # past the window; a slow machine only waits longer, which changes nothing
    assert repository_index(ports.listen) == grpc.StatusCode.UNAVAILABLE
    assert len(prom.queries()) >= 2


@pytest.mark.integration
def test_https_prometheus_with_a_token_file(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any, tls_ca: TlsFiles, tmp_path: Path
) -> None:
    """Verified TLS (SNI + test CA) and the bearer token read from the mounted file."""
    prom: FakePrometheus = fake_prometheus(tls_ca)
    prom.answer(vector("500"))
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    p, site = gated()
    assert site.prometheus is not None
    auth = PrometheusAuth(secret_ref=SecretKeyRef(name="prometheus-token", key="token"))
    site = site.model_copy(update={"prometheus": site.prometheus.model_copy(update={"auth": auth})})
    ports, env = start_envoy(
        run_envoy,
        triton_server,
        p,
        site,
        prom.url("localhost"),
        ca_bundle=str(tls_ca.ca_cert),
        prometheus_token_path=str(token),
    )
    assert "s3cr3t" not in env.config_path.read_text()  # the config names the file, never the token
    assert repository_index(ports.listen) == grpc.StatusCode.UNAVAILABLE
    [seen] = prom.queries()
    assert seen.headers["authorization"] == "Bearer s3cr3t-token"
    assert seen.headers["host"] == f"localhost:{prom.port}"


@pytest.mark.integration
def test_https_prometheus_with_an_untrusted_certificate_is_an_error(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any, tls_ca: TlsFiles
) -> None:
    """With the system CA bundle the test certificate does not verify: the load is unknown (closed)."""
    prom: FakePrometheus = fake_prometheus(tls_ca)
    prom.answer(vector("5"))
    p, site = gated(GATE.model_copy(update={"on_prometheus_error": "closed"}))
    ports = start(run_envoy, triton_server, p, site, prom.url("localhost"))
    assert repository_index(ports.listen) == grpc.StatusCode.UNAVAILABLE
    assert prom.queries() == []  # the TLS handshake failed before any request


@pytest.mark.integration
def test_missing_token_file_counts_as_a_prometheus_error(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any, tls_ca: TlsFiles, tmp_path: Path
) -> None:
    prom: FakePrometheus = fake_prometheus(tls_ca)
    prom.answer(vector("5"))
    p, site = gated(GATE.model_copy(update={"on_prometheus_error": "closed"}))
    assert site.prometheus is not None
    auth = PrometheusAuth(secret_ref=SecretKeyRef(name="prometheus-token", key="token"))
    site = site.model_copy(update={"prometheus": site.prometheus.model_copy(update={"auth": auth})})
    ports = start(
        run_envoy,
        triton_server,
        p,
        site,
        prom.url("localhost"),
        ca_bundle=str(tls_ca.ca_cert),
        prometheus_token_path=str(tmp_path / "absent"),
    )
    assert repository_index(ports.listen) == grpc.StatusCode.UNAVAILABLE
    assert prom.queries() == []  # no unauthenticated query is sent
