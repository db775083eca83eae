"""The load probe: a short burst at the declared concurrency, judged against ``checks.latencySLO``."""

from __future__ import annotations

from pipelines.checks.context import Context, timed
from pipelines.checks.load import run_load
from pipelines.checks.result import CheckResult, Status
from pipelines.checks.tensors import ModelPlan, TensorError, synthetic_inputs
from pipelines.config.model import LatencySLO

Outcome = tuple[Status, str, dict[str, object]]


def latency(ctx: Context, plan: ModelPlan, slo: LatencySLO) -> CheckResult:
    """p50/p99, throughput and errors of ``slo.requests`` requests from ``slo.concurrency`` clients."""

    def body() -> Outcome:
        try:
            arrays = synthetic_inputs(plan)
        except TensorError as exc:
            return "fail", str(exc), {}
        dtypes = {t.name: t.dtype for t in plan.model.inputs}
        result = run_load(
            ctx.endpoint,
            plan.name,
            arrays,
            dtypes,
            concurrency=slo.concurrency,
            requests=slo.requests,
            deadline=max(0.0, ctx.left()),
            request_timeout=ctx.timeout(),
        )
        data: dict[str, object] = {
            **result.summary(),
            "concurrency": slo.concurrency,
            "error_kinds": dict(result.error_kinds),
            "slo_p50_ms": slo.p50 * 1000 if slo.p50 is not None else None,
            "slo_p99_ms": slo.p99 * 1000,
            "max_error_ratio": slo.max_error_ratio,
        }
        figures = (
            f"{result.requests} requests at concurrency {slo.concurrency}: p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.throughput:.0f}/s, {result.errors} errors"
        )
        problems = []
        if result.stopped_early:
            problems.append(
                f"the run's deadline stopped the probe after {result.requests} of {slo.requests} requests"
            )
        if result.error_ratio > slo.max_error_ratio:
            kinds = ", ".join(f"{k} x{n}" for k, n in result.error_kinds.items())
            problems.append(
                f"error ratio {result.error_ratio:.3f} above {slo.max_error_ratio:g} ({kinds}; first: {result.first_error})"
            )
        if result.ok == 0:
            problems.append("no request succeeded")
        else:
            if slo.p50 is not None and result.p50_ms > slo.p50 * 1000:
                problems.append(f"p50 {result.p50_ms:.1f} ms above the SLO {slo.p50 * 1000:g} ms")
            if result.p99_ms > slo.p99 * 1000:
                problems.append(f"p99 {result.p99_ms:.1f} ms above the SLO {slo.p99 * 1000:g} ms")
        if problems:
            return "fail", f"{figures}; " + "; ".join(problems), data
        bounds = (
            f"p50 <= {slo.p50 * 1000:g} ms, " if slo.p50 is not None else ""
        ) + f"p99 <= {slo.p99 * 1000:g} ms"
        return "pass", f"{figures} (SLO {bounds})", data

    return timed("latency.slo", plan.name, body)
