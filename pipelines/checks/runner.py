"""Run every post-deploy check of one deployment against a live endpoint, in a sensible order.

Order: authentication first (without a token nothing else can be asked), then the server, then
per model readiness, config, a synthetic and a reference inference, then the load probe, and
the Prometheus queries last (they do not need the server). A check whose precondition failed
is skipped with the reason, so the first real failure stands out instead of a cascade.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from pipelines.checks import auth, inference, scaling, server, slo
from pipelines.checks.connection import Endpoint
from pipelines.checks.context import Context, skipped
from pipelines.checks.result import CheckResult, Report
from pipelines.checks.tensors import plans
from pipelines.config.model import Placement


def run_checks(
    p: Placement,
    endpoint: str | Endpoint,
    *,
    token: str | None = None,
    prometheus_url: str | None = None,
    prometheus_token: str | None = None,
    timeout: float | None = None,
    call_timeout: float = 10.0,
    metrics_wait: float = 60.0,
    load_probe: bool = True,
    on_result: Callable[[CheckResult], None] | None = None,
) -> Report:
    """Check the deployment ``p`` served at ``endpoint`` (``HOST:PORT`` of its Envoy, gRPC).

    Args:
        token: bearer token sent with every request (JWT deployments).
        prometheus_url: where the load and activation queries are asked; None skips those checks.
        timeout: bound for the whole run (default: the deployment's ``checks.timeout``).
        call_timeout: deadline of each gRPC call.
        metrics_wait: how long an empty Prometheus answer is re-asked (rates need two scrapes).
        load_probe: run the latency/SLO burst (turned off by tests that only need function).
        on_result: called with each result as it is known (progress output).

    Never raises for what the endpoint or Prometheus do; raises EndpointError for a malformed
    endpoint string.
    """
    ep = (
        endpoint
        if isinstance(endpoint, Endpoint)
        else Endpoint.parse(endpoint, token=token, timeout=call_timeout)
    )
    if token is not None and ep.token != token:
        ep = Endpoint(ep.host, ep.port, token, ep.timeout, ep.tls)
    budget = timeout if timeout is not None else p.checks.timeout
    ctx = Context(ep, ep.client(), time.monotonic() + budget)
    results: list[CheckResult] = []

    def add(result: CheckResult) -> CheckResult:
        results.append(result)
        if on_result is not None:
            on_result(result)
        return result

    def guard(check: str, target: str, run: Callable[[], CheckResult], blocked: str | None) -> CheckResult:
        if blocked:
            return add(skipped(check, target, blocked))
        if ctx.expired:
            return add(skipped(check, target, f"the run's time limit ({budget:g}s) is used up"))
        return add(run())

    model_plans = plans(p)
    try:
        first = model_plans[0] if model_plans else None
        add(auth.anonymous_rejected(ctx, p, first))
        token_result = add(auth.token_accepted(ctx, p))
        blocked = "needs a token (see auth.token)" if token_result.failed and not ep.token else None

        live = guard("server.live", "", partial(server.live, ctx), blocked)
        if blocked is None and live.status != "pass":
            blocked = "the server is not live (see server.live)"
        guard("server.ready", "", partial(server.ready, ctx), blocked)

        usable = []
        for plan in model_plans:
            ready = guard("model.ready", plan.name, partial(server.model_ready, ctx, plan.model), blocked)
            why = blocked or (None if ready.status == "pass" else "the model is not ready (see model.ready)")
            guard("model.config", plan.name, partial(server.model_matches, ctx, plan.model), why)
            infer = guard("model.infer", plan.name, partial(inference.synthetic, ctx, plan), why)
            guard("model.reference", plan.name, partial(inference.reference, ctx, p, plan), why)
            if infer.status == "pass":
                usable.append(plan.name)
        if load_probe:
            for plan in model_plans:
                why = blocked or (
                    None if plan.name in usable else "no successful inference (see model.infer)"
                )
                guard("latency.slo", plan.name, partial(slo.latency, ctx, plan, p.checks.latency_slo), why)
        for result in scaling.query_checks(ctx, p, prometheus_url, token=prometheus_token, wait=metrics_wait):
            add(result)
    finally:
        ctx.client.close()
    return Report(p.ref, p.site, str(ep), tuple(results))
