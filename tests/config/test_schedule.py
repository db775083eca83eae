"""Cron schedules of the scheduled checks (issue 11, finding 5): parsed, Argo-compatible, not too frequent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipelines.config.schedule import MIN_SCHEDULE_INTERVAL, schedule_problem, shortest_gap
from pipelines.config.schema import load_schema


@pytest.mark.parametrize(
    ("expr", "gap"),
    [
        ("0 */6 * * *", timedelta(hours=6)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 3 * * MON-FRI", timedelta(days=1)),  # conservatively: as if every day ran
        ("0,59 0,23 * * *", timedelta(minutes=1)),  # 23:59 then 00:00 the next day
        ("* * * * *", timedelta(minutes=1)),
        ("30 1 1 JAN *", timedelta(days=1)),
    ],
)
def test_shortest_gap(expr: str, gap: timedelta) -> None:
    assert shortest_gap(expr) == gap


@pytest.mark.parametrize("expr", ["0 */6 * * *", "*/15 * * * *", "0 0 * jan-mar sun", "15 4 1,15 * ?"])
def test_acceptable_schedules(expr: str) -> None:
    assert schedule_problem(expr) is None


def test_the_limit_is_the_one_the_schema_documents() -> None:
    minutes = int(MIN_SCHEDULE_INTERVAL.total_seconds() // 60)
    assert f"at least {minutes} minutes between runs" in load_schema("common")["$defs"]["cron"]["description"]
    assert schedule_problem("*/14 * * * *") is not None
    assert schedule_problem("*/15 * * * *") is None


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("99 99 99 99 99", "'99 99 99 99 99' is not a valid cron schedule"),
        ("0 0 1 1 * 5", "is not a five-field cron schedule"),
        ("0 0 L * *", "uses 'L'"),
        ("0 0 15W * *", "uses '15W'"),
        ("H 0 * * *", "is not a valid cron schedule"),
        (
            "*/5 * * * *",
            "runs 5 minutes apart at its closest: scheduled checks may run at most every 15 minutes",
        ),
    ],
)
def test_refused_schedules(expr: str, message: str) -> None:
    problem = schedule_problem(expr)
    assert problem is not None and message in problem
