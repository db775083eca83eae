"""Ask Prometheus for one instant value, the way KEDA's Prometheus scaler does.

KEDA takes the single element of an instant-vector (or a scalar) answer. An empty answer gives
it nothing to scale on: autoscaling of the deployment silently stops, and the admission gate
has no load to compare. So an empty answer, several series, NaN or Inf are all failures here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Problem = Literal["", "unavailable", "empty", "multiple", "not-finite", "error"]


@dataclass(frozen=True)
class Answer:
    """One query's outcome: ``value`` when ``problem`` is empty, otherwise why there is none."""

    query: str
    value: float | None
    problem: Problem
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def instant_query(url: str, query: str, *, token: str | None = None, timeout: float = 5.0) -> Answer:
    """Evaluate ``query`` now at the Prometheus at ``url``; never raises for network or API errors."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(
            f"{url.rstrip('/')}/api/v1/query",
            params={"query": query},
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return Answer(
            query, None, "unavailable", f"Prometheus at {url} unreachable ({type(exc).__name__}: {exc})"
        )
    try:
        body: Any = resp.json()
    except ValueError:
        return Answer(
            query, None, "unavailable", f"Prometheus at {url} answered HTTP {resp.status_code}, not JSON"
        )
    if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        why = body.get("error") if isinstance(body, dict) else None
        kind: Problem = "error" if resp.status_code in (400, 422) else "unavailable"
        return Answer(query, None, kind, f"HTTP {resp.status_code}: {why or 'unexpected answer'}")
    return parse(query, body.get("data"))


def parse(query: str, data: Any) -> Answer:
    """Turn the ``data`` of a successful /api/v1/query answer into one finite value or a problem."""
    if not isinstance(data, dict):
        return Answer(query, None, "error", "answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        raw = result[1]
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return Answer(query, None, "empty", "the query returned no series")
        if len(result) > 1:
            labels = [r.get("metric", {}) for r in result[:3] if isinstance(r, dict)]
            return Answer(query, None, "multiple", f"{len(result)} series (KEDA needs exactly one): {labels}")
        sample = result[0].get("value") if isinstance(result[0], dict) else None
        if not isinstance(sample, list) or len(sample) != 2:
            return Answer(query, None, "error", "malformed sample in the answer")
        raw = sample[1]
    else:
        return Answer(query, None, "error", f"result type {kind!r} (expected a vector or a scalar)")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return Answer(query, None, "error", f"sample value {raw!r} is not a number")
    if not math.isfinite(value):
        return Answer(query, value, "not-finite", f"value is {raw} (no traffic yet, or a division by zero)")
    return Answer(query, value, "")
