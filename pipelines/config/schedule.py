"""Cron schedules of the scheduled checks: parsed with croniter, and never too frequent.

Every deployment at a site shares one CronWorkflow (``scheduled-validation-<site>``), so one
deployment's schedule is every deployment's problem: a schedule Argo cannot parse stops the
whole site's checks, and ``* * * * *`` floods them. A schedule must therefore parse, use only
syntax Argo's cron parser (robfig/cron, standard five fields) understands, and leave at least
:data:`MIN_SCHEDULE_INTERVAL` between two runs.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

from croniter import CroniterError, croniter

# The one place that decides how often a deployment may be re-checked (docs/security.md).
MIN_SCHEDULE_INTERVAL = timedelta(minutes=15)

_DAY = 24 * 60
_NAMES = re.compile(
    r"(?i)\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat)\b"
)
# Quartz/Jenkins extensions croniter accepts but Argo's parser refuses: L, W, #, H.
_EXTENSION = re.compile(r"(?i)[lwh#]")


def _minutes(values: list[int | str], span: int) -> list[int]:
    return list(range(span)) if "*" in values else sorted(int(v) for v in values)


def shortest_gap(expr: str) -> timedelta:
    """The shortest time between two runs of a five-field schedule (conservatively: runs on
    consecutive days are assumed possible, so ``59 23 * * *`` with ``0 0`` counts the midnight gap).

    The times of day are the product of the minute and hour fields, whatever the day fields say,
    so the gap is found from them alone, without stepping through a year of runs.
    """
    minute, hour = croniter(expr).expanded[:2]
    times = sorted(h * 60 + m for h in _minutes(hour, 24) for m in _minutes(minute, 60))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    gaps.append(_DAY - times[-1] + times[0])  # last run of a day to the first of the next
    return timedelta(minutes=min(gaps))


def schedule_problem(expr: str) -> str | None:
    """Why ``expr`` cannot be a scheduled-check schedule, or None when it can."""
    fields = expr.split()
    if len(fields) != 5:
        return f"{expr!r} is not a five-field cron schedule (minute hour day-of-month month day-of-week)"
    try:
        croniter(expr)
    except (CroniterError, ValueError) as exc:
        return f"{expr!r} is not a valid cron schedule ({exc})"
    odd = [f for f in fields if _EXTENSION.search(_NAMES.sub("", f))]
    if odd:
        return (
            f"{expr!r} uses {', '.join(repr(f) for f in odd)}: L, W, # and H are not understood by "
            "Argo's cron parser; use numbers, ranges, lists, steps and month or day names"
        )
    gap = shortest_gap(expr)
    if gap < MIN_SCHEDULE_INTERVAL:
        return (
            f"{expr!r} runs {_format(gap)} apart at its closest: scheduled checks may run at most every "
            f"{_format(MIN_SCHEDULE_INTERVAL)}, since every deployment of the site shares one CronWorkflow; "
            "choose a sparser schedule such as '0 */6 * * *'"
        )
    return None


def _format(gap: timedelta) -> str:
    minutes = int(gap.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
