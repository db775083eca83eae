"""The checks against a real stack: healthy passes everything; each fault fails its own check.

One stack (3 Triton replicas, the rendered Envoy, Prometheus with the rendered rules) is shared
by the module. The two tests that damage it (Prometheus stopped, a replica killed) run last and
the first one restores what it broke.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import numpy as np
import pytest
import tritonclient.grpc as triton
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from pipelines.checks import Endpoint, run_checks, scaling
from pipelines.checks.load import run_load
from pipelines.checks.prometheus import instant_query
from pipelines.checks.tensors import plans, synthetic_inputs
from pipelines.local import stack
from pipelines.local.envoy import upstream_health
from pipelines.render.envoy.k8s import envoy_workers
from pipelines.render.metrics import load_query
from tests.checks.conftest import needs_prometheus

pytestmark = pytest.mark.integration

ISSUER = "https://idp.example.org/realms/sonic"
AUDIENCE = "sonic-test"


def statuses(report: Any) -> dict[tuple[str, str], str]:
    return {(r.check, r.target): r.status for r in report.results}


def slo(**bounds: str) -> Callable[[dict[str, Any]], None]:
    """An edit setting ``checks.latencySLO`` (the probe's size stays the deployment's: 4 x 200)."""

    def edit(d: dict[str, Any]) -> None:
        d["checks"]["latencySLO"] = {**bounds, "concurrency": 4, "requests": 200}

    return edit


# Latency bounds no healthy loopback stack can miss, however busy the machine: the probe still runs
# and its request count and error count are judged, but its verdict never depends on speed.
LOOSE_SLO = slo(p50="10s", p99="30s")


def test_local_envoy_runs_the_rendered_worker_count(live: Any) -> None:
    """The one machine runs Envoy as the cluster would: --concurrency from the rendered Deployment."""
    _, p, state = live
    info = httpx.get(f"http://127.0.0.1:{state.envoy_admin}/server_info", timeout=5).json()
    assert info["command_line_options"]["concurrency"] == envoy_workers(p) == 1  # the 500m default


@needs_prometheus
def test_healthy_deployment_passes_every_check(live: Any, variant: Any) -> None:
    _, _, state = live
    _, p = variant(LOOSE_SLO)
    report = run_checks(p, state.endpoint, prometheus_url=state.prometheus_url, timeout=120)
    assert report.passed, [r.as_dict() for r in report.failures]
    got = statuses(report)
    for check in (
        "server.live",
        "server.ready",
        "model.ready",
        "model.config",
        "model.infer",
        "model.reference",
    ):
        target = "" if check.startswith("server") else "btag_mini"
        assert got[(check, target)] == "pass"
    assert got[("latency.slo", "btag_mini")] == "pass"
    probe = report.result("latency.slo", "btag_mini")
    assert probe is not None
    assert (probe.data["requests"], probe.data["errors"], probe.data["concurrency"]) == (200, 0, 4)
    assert 0 < probe.data["p50_ms"] <= probe.data["p99_ms"]
    assert got[("metrics.load", "")] == "pass"  # the admission gate's query has a finite value
    # Only what does not apply is skipped: no JWT declared, no autoscaling (so no activation query).
    assert {k for k, v in got.items() if v == "skip"} == {
        ("auth.anonymous", ""),
        ("auth.token", ""),
        ("metrics.activation", ""),
    }
    reference = report.result("model.reference", "btag_mini")
    assert reference is not None and reference.data["max_abs_diff"]["softmax"] <= 1e-5


def test_a_latency_slo_nobody_can_meet_fails(live: Any, variant: Any) -> None:
    """1 us is below any gRPC round trip, so the SLO verdict is FAIL on every machine."""
    _, _, state = live
    _, p = variant(slo(p50="1us", p99="1us"))
    report = run_checks(p, state.endpoint, timeout=120)
    probe = report.result("latency.slo", "btag_mini")
    assert probe is not None and probe.status == "fail"
    # Both bounds are named with what was measured.
    assert re.findall(r"(p50|p99) [0-9.]+ ms above the SLO 0\.001 ms", probe.detail) == ["p50", "p99"]
    assert (probe.data["requests"], probe.data["errors"]) == (200, 0)  # latency alone failed it
    assert (probe.data["slo_p50_ms"], probe.data["slo_p99_ms"]) == pytest.approx((0.001, 0.001))
    assert [r.check for r in report.failures] == ["latency.slo"]


def test_declared_model_missing_from_the_repository(live: Any, variant: Any) -> None:
    _, _, state = live

    def add_model(d: dict[str, Any]) -> None:
        d["models"].append({**d["models"][0], "name": "btag_extra"})

    _, p = variant(add_model)
    report = run_checks(p, state.endpoint, load_probe=False)
    got = statuses(report)
    assert got[("model.ready", "btag_extra")] == "fail"
    detail = report.result("model.ready", "btag_extra").detail  # type: ignore[union-attr]
    assert "missing from the repository" in detail
    # Its other checks are skipped with the reason; the served model still passes.
    assert got[("model.config", "btag_extra")] == got[("model.infer", "btag_extra")] == "skip"
    assert got[("model.ready", "btag_mini")] == got[("model.reference", "btag_mini")] == "pass"
    assert [r.check + ":" + r.target for r in report.failures] == ["model.ready:btag_extra"]


def test_wrong_outputs_against_the_reference(live: Any, variant: Any) -> None:
    _, _, state = live
    _, p = variant()
    outputs = p.source.parent / "checks" / "btag_mini_outputs.npz"
    expected = dict(np.load(outputs))
    expected["softmax"] = expected["softmax"].copy()
    expected["softmax"][0, 0] += 0.01  # one value off by far more than atol=1e-5
    np.savez(outputs, **expected)
    report = run_checks(p, state.endpoint, load_probe=False)
    ref = report.result("model.reference", "btag_mini")
    assert ref is not None and ref.status == "fail"
    assert "1 of 24 values outside" in ref.detail
    assert ref.data["max_abs_diff"]["softmax"] == pytest.approx(0.01, rel=1e-3)
    assert [r.check for r in report.failures] == ["model.reference"]


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_of(key: rsa.RSAPrivateKey) -> str:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return json.dumps({"keys": [{**jwk, "kid": "test", "alg": "RS256", "use": "sig"}]})


def token(key: rsa.RSAPrivateKey, audience: str = AUDIENCE) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": "sonic-test-client", "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test"})


def with_jwt(d: dict[str, Any]) -> None:
    d["envoy"]["auth"] = {
        "jwt": {
            "provider": "test-idp",
            "issuer": ISSUER,
            "jwksUri": f"{ISSUER}/certs",
            "audiences": [AUDIENCE],
        }
    }


def test_client_credentials_token_passes_the_real_jwt_filter(
    live: Any, variant: Any, signing_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """`sonic check --client-credentials` (issue 10.10): a fresh token from a token endpoint on
    127.0.0.1 (RFC 6749 client credentials grant), accepted by the rendered Envoy JWT filter."""
    from click.testing import CliRunner

    from pipelines.cli import cli
    from tests.checks.test_oauth2 import credentials_dir, token_endpoint
    from tests.ops.fakes import serve

    _, _, state = live
    tree, p = variant(with_jwt)
    root = p.source.parents[2]  # experiments/cms/minimal.yaml of the edited copy
    with (
        stack.extra_envoy(state, p, tree.sites[p.site], name="envoy-cc", jwks=jwks_of(signing_key)) as env,
        serve(token_endpoint(token(signing_key))) as idp,
    ):
        creds = credentials_dir(tmp_path, f"{idp.url}/realms/sonic/protocol/openid-connect/token")
        result = CliRunner().invoke(
            cli,
            ["check", "cms/minimal", "--root", str(root), "--endpoint", env.endpoint, "--client-credentials",
             str(creds), "--format", "json", "--metrics-wait", "0",
             *(["--prometheus", state.prometheus_url] if state.prometheus_url else [])],
        )  # fmt: skip
        asked = [r.method for r in idp.requests]
    report = json.loads(result.stdout)
    got = {(c["check"], c["target"]): c["status"] for c in report["checks"]}
    assert asked == ["POST"]
    assert got[("auth.token", "")] == "pass" and got[("auth.anonymous", "")] == "pass", report
    assert got[("model.infer", "btag_mini")] == "pass", report


def test_auth_on_and_no_token(live: Any, variant: Any, signing_key: rsa.RSAPrivateKey) -> None:
    """The rendered JWT filter (keys inlined: no identity server here) in front of the same Tritons."""
    _, _, state = live
    tree, p = variant(with_jwt)
    with stack.extra_envoy(state, p, tree.sites[p.site], name="envoy-jwt", jwks=jwks_of(signing_key)) as env:
        without = run_checks(p, env.endpoint, load_probe=False)
        got = statuses(without)
        assert got[("auth.anonymous", "")] == "pass"  # refused with UNAUTHENTICATED, as it must be
        assert got[("auth.token", "")] == "fail"
        assert "no token was given" in without.result("auth.token").detail  # type: ignore[union-attr]
        assert [r.check for r in without.failures] == ["auth.token"]
        assert got[("server.live", "")] == got[("model.infer", "btag_mini")] == "skip"

        with_token = run_checks(p, env.endpoint, token=token(signing_key), load_probe=False)
        assert with_token.passed, [r.as_dict() for r in with_token.failures]
        assert statuses(with_token)[("auth.token", "")] == "pass"

        wrong_audience = run_checks(
            p, env.endpoint, token=token(signing_key, "someone-else"), load_probe=False
        )
        assert statuses(wrong_audience)[("auth.token", "")] == "fail"
        detail = wrong_audience.result("auth.token").detail  # type: ignore[union-attr]
        assert detail == "the token was refused: PERMISSION_DENIED: Audiences in Jwt are not allowed"


def test_declared_auth_not_enforced_is_caught(live: Any, variant: Any) -> None:
    """The deployment declares JWT but the endpoint (the stack's plain Envoy) lets anyone in."""
    _, _, state = live
    _, p = variant(with_jwt)
    report = run_checks(p, state.endpoint, token="not-checked-by-this-envoy", load_probe=False)
    anon = report.result("auth.anonymous")
    assert anon is not None and anon.status == "fail"
    assert "WITHOUT a token was ACCEPTED" in anon.detail


def repository_index(endpoint: str) -> grpc.StatusCode | None:
    """A new client's first call; None when admitted, else the gRPC status it got."""
    client = Endpoint.parse(endpoint).client()
    try:
        client.get_model_repository_index(client_timeout=10)
    except triton.InferenceServerException as exc:
        return getattr(grpc.StatusCode, str(exc.status()).removeprefix("StatusCode."))
    finally:
        client.close()
    return None


@needs_prometheus
def test_admission_gate_over_its_threshold(live: Any, variant: Any) -> None:
    """A tiny threshold: any queueing is 'overload'. New clients are refused, running ones continue."""
    _, p, state = live

    def tiny_gate(d: dict[str, Any]) -> None:
        d["envoy"]["admissionGate"] = {"threshold": 1e-9, "onPrometheusError": "open", "cacheFor": "1s"}

    vtree, vp = variant(tiny_gate)
    plan = plans(p)[0]
    arrays = synthetic_inputs(plan)
    dtypes = {t.name: t.dtype for t in plan.model.inputs}
    with stack.extra_envoy(state, vp, vtree.sites[vp.site], name="envoy-gate") as env:
        existing = Endpoint.parse(env.endpoint).client()  # a client that started before the overload
        inputs = []
        for name, arr in arrays.items():
            t = triton.InferInput(name, list(arr.shape), dtypes[name])
            t.set_data_from_numpy(arr)
            inputs.append(t)
        try:
            existing.infer(plan.name, inputs, client_timeout=10)
            # Load through the stack's own Envoy until Prometheus sees queueing (> 1e-9 ms per batch).
            deadline = time.monotonic() + 40
            value = 0.0
            while time.monotonic() < deadline:
                run_load(
                    Endpoint.parse(state.endpoint),
                    plan.name,
                    arrays,
                    dtypes,
                    concurrency=8,
                    requests=200,
                    deadline=10,
                )
                answer = instant_query(state.prometheus_url, load_query(vp))
                if answer.ok and answer.value is not None and answer.value > 1e-9:
                    value = answer.value
                    break
            assert value > 1e-9, "Prometheus never saw any queueing"

            assert repository_index(env.endpoint) == grpc.StatusCode.UNAVAILABLE  # the new client is refused
            for _ in range(5):  # ... while the running client keeps inferring on its connection
                result = existing.infer(plan.name, inputs, client_timeout=10)
                assert result.as_numpy("softmax") is not None
            # The same load is far below the real threshold (100): the stack's own Envoy admits.
            assert repository_index(state.endpoint) is None
        finally:
            existing.close()


@needs_prometheus
def test_prometheus_stopped_reports_metric_unavailable(live: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, p, state = live
    asked: list[str] = []

    def counted(url: str, query: str, **kw: Any) -> Any:
        asked.append(query)
        return instant_query(url, query, **kw)

    monkeypatch.setattr(scaling, "instant_query", counted)
    stack.stop_prometheus(state)
    try:
        report = run_checks(
            p, state.endpoint, prometheus_url=state.prometheus_url, load_probe=False, timeout=60
        )
        load = report.result("metrics.load")
        assert load is not None and load.status == "fail"
        assert load.detail.startswith("metric unavailable") and "unreachable" in load.detail
        # Unreachable is final: asked once, never re-asked as "no data yet" would be.
        assert asked == [load_query(p)]
        assert [r.check for r in report.failures] == ["metrics.load"]
        # The gate fails open (onPrometheusError: open): once its cached answer has expired, a new
        # client is admitted and Envoy logs why.
        assert p.envoy.admission_gate is not None
        time.sleep(p.envoy.admission_gate.cache_for + 0.5)
        assert repository_index(state.endpoint) is None
        log = Path(state.process("envoy").log).read_text(errors="replace")
        assert "admitting new clients (fail open)" in log
    finally:
        live_state = stack.restart_prometheus(state, p)
        assert live_state.prometheus_port == state.prometheus_port


def envoy_counter(admin: int, name: str) -> int:
    body = httpx.get(f"http://127.0.0.1:{admin}/stats?filter=^cluster.triton.{name}$", timeout=5).text
    return int(body.split(":")[1]) if ":" in body else 0


def test_replica_killed_under_load(live: Any) -> None:
    """Envoy retries on another replica and ejects the dead one.

    When a replica dies, the requests that were on it, plus the ones LEAST_REQUEST sends to it
    next (it looks idle), fail at once, and Envoy retries at most max(minRetryConcurrency, 20 %
    of active requests) of them concurrently; the rest would get UNAVAILABLE ("retry overflow").
    With the schema default (minRetryConcurrency 32, above this test's concurrency) no client
    request may fail; with minRetryConcurrency 3 we measured 0 or 1 failure in 2000. The test
    asserts that bound and that every client failure is one Envoy counted as a retry it was not
    allowed to make. Runs last: it leaves 2 of 3 replicas.

    The replica is killed when the 200th request has completed (counted, not timed), by the
    client thread that completed it, so the kill falls inside the burst on any machine.
    """
    _, p, state = live
    plan = plans(p)[0]
    arrays = synthetic_inputs(plan)
    dtypes = {t.name: t.dtype for t in plan.model.inputs}
    concurrency, total, kill_after = 4, 2000, 200
    killed = threading.Event()
    completed_after_kill = 0
    count = threading.Lock()

    def kill_at(n: int) -> None:
        nonlocal completed_after_kill
        if n == kill_after:
            stack.kill_triton(state, 1)
            killed.set()
        elif killed.is_set():
            with count:
                completed_after_kill += 1

    result = run_load(
        Endpoint.parse(state.endpoint),
        plan.name,
        arrays,
        dtypes,
        concurrency=concurrency,
        requests=total,
        deadline=60,
        on_progress=kill_at,
    )
    assert killed.is_set() and not state.process("triton-1").alive()
    # Mid-load: 200 requests had completed before the kill, and the burst went on to all 2000,
    # with requests still completing once the replica was dead.
    assert result.requests == total and not result.stopped_early
    assert completed_after_kill > 0
    retried = envoy_counter(state.envoy_admin, "upstream_rq_retry_success")
    refused = envoy_counter(state.envoy_admin, "upstream_rq_retry_overflow") + envoy_counter(
        state.envoy_admin, "upstream_rq_retry_limit_exceeded"
    )
    assert retried >= 1  # requests that hit the dead replica were answered by another one
    assert result.errors <= max(0, concurrency - p.envoy.retries.min_retry_concurrency)
    assert result.errors == refused, (result.error_kinds, result.first_error)
    assert set(result.error_kinds) <= {"UNAVAILABLE"}
    dead = state.tritons[1].grpc_address
    assert upstream_health(state.envoy_admin)[dead] != "healthy"
