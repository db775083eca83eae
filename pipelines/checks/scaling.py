"""Can autoscaling and the admission gate see their metric?

The load query (KEDA's trigger and the admission gate's input), the gate's own query when it has
one (envoy.admissionGate.metric) and the activation query (what wakes a deployment scaled to
zero) must each return exactly one finite number. Prometheus
needs a couple of scrapes before a ``rate()`` has a value, so an empty answer is re-asked until
the wait runs out; an unreachable Prometheus fails at once as "metric unavailable".
"""

from __future__ import annotations

import time

from pipelines.checks.context import Context, skipped, timed
from pipelines.checks.prometheus import Answer, instant_query
from pipelines.checks.result import CheckResult, Status
from pipelines.config.model import Placement
from pipelines.render import metrics

Outcome = tuple[Status, str, dict[str, object]]

CONSEQUENCES = {
    "KEDA trigger": "KEDA's Prometheus scaler gets no value, so the deployment SILENTLY STOPS SCALING",
    "KEDA activation": "a deployment scaled to zero can never be woken up",
    "admission gate": "the admission gate has no load to compare, so it cannot protect the servers",
}


def users(p: Placement) -> tuple[list[str], list[str]]:
    """Who relies on the load query and who on the activation query (empty lists: nobody)."""
    gate = _gate_on(p) and metrics.gate_query(p) == metrics.load_query(p)
    load = (["KEDA trigger"] if p.autoscaling else []) + (["admission gate"] if gate else [])
    activation = ["KEDA activation"] if p.autoscaling else []
    return load, activation


def _gate_on(p: Placement) -> bool:
    return p.envoy.admission_gate is not None and p.envoy.admission_gate.enabled


def _own_gate_metric(p: Placement) -> bool:
    """The admission gate reads a metric of its own (envoy.admissionGate.metric), not the load metric."""
    return _gate_on(p) and metrics.gate_query(p) != metrics.load_query(p)


def query_checks(
    ctx: Context,
    p: Placement,
    prometheus_url: str | None,
    *,
    token: str | None = None,
    wait: float = 60.0,
    interval: float = 2.0,
) -> list[CheckResult]:
    """The load-query and activation-query checks, each skipped with a reason when nothing uses it."""
    load_users, activation_users = users(p)
    specs: list[tuple[str, str, list[str], str, str]] = [
        (
            "metrics.load",
            metrics.load_query(p),
            load_users,
            metrics.triton_selector(p),
            "no autoscaling; the admission gate reads its own metric, metrics.gate"
            if _own_gate_metric(p)
            else "no autoscaling, no admission gate",
        ),
        (
            "metrics.activation",
            metrics.activation_query(p),
            activation_users,
            metrics.envoy_selector(p),
            "no autoscaling",
        ),
    ]
    if _own_gate_metric(p):
        specs.append(
            (
                "metrics.gate",
                metrics.gate_query(p),
                ["admission gate"],
                metrics.triton_selector(p),
                "no admission gate",
            )
        )
    out = []
    for check, query, who, selector, unused in specs:
        if not who:
            out.append(skipped(check, "", f"nothing uses this query ({unused})"))
        elif not prometheus_url:
            out.append(skipped(check, "", "no Prometheus URL given (pass --prometheus URL)"))
        else:
            out.append(_query_check(ctx, check, query, who, selector, prometheus_url, token, wait, interval))
    return out


def _query_check(
    ctx: Context,
    check: str,
    query: str,
    who: list[str],
    selector: str,
    url: str,
    token: str | None,
    wait: float,
    interval: float,
) -> CheckResult:
    def body() -> Outcome:
        give_up = time.monotonic() + max(0.0, min(wait, ctx.left()))
        while True:
            answer = instant_query(url, query, token=token, timeout=ctx.timeout(5.0))
            # Only "no data yet" can improve by waiting; other problems are final.
            if answer.problem not in ("empty", "not-finite") or time.monotonic() + interval > give_up:
                break
            time.sleep(interval)
        return judge(answer, who, selector)

    return timed(check, "", body)


def judge(answer: Answer, who: list[str], selector: str) -> Outcome:
    """A finite value passes; every other answer fails with what it means for scaling."""
    data: dict[str, object] = {"query": answer.query, "value": answer.value, "used_by": who}
    users_text = " and ".join(who)
    if answer.ok:
        return "pass", f"{answer.value:.6g} (used by {users_text})", data
    if answer.problem == "unavailable":
        return "fail", f"metric unavailable: {answer.detail}; {users_text} cannot see the load", data
    if answer.problem == "empty":
        harm = "; ".join(CONSEQUENCES[w] for w in who)
        return (
            "fail",
            f"EMPTY ANSWER: the query returned no series. {harm}. Check that Prometheus scrapes the "
            f"deployment and that its targets carry the labels the query selects on ({selector}).",
            data,
        )
    return "fail", f"{answer.problem}: {answer.detail} ({users_text} would get no usable value)", data
