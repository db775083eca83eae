"""Push the result of a scheduled check to a Prometheus Pushgateway (text exposition format 0.0.4).

One group per deployment (``job``, ``site``, ``experiment``, ``deployment`` in the grouping key),
replaced on every push (HTTP PUT), so a removed check never lingers as a stale series and alerts
can fire on ``sonic_check_success == 0`` or on ``time() - sonic_check_last_run_timestamp_seconds``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from pipelines.ops.errors import RemoteError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TIMEOUT = 10.0
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.~-]+$")


class PushError(RemoteError):
    """The push failed; ``transient`` for network errors and 5xx."""


@dataclass(frozen=True)
class Sample:
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    samples: tuple[Sample, ...]
    type: str = "gauge"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) or abs(value) >= 1e15 else str(int(value))


def exposition(metrics: Sequence[Metric]) -> str:
    """The text format: HELP and TYPE once per metric, then its samples; newline-terminated."""
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {_escape_help(m.help)}")
        lines.append(f"# TYPE {m.name} {m.type}")
        for s in m.samples:
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in s.labels)
            lines.append(
                f"{s.name}{{{labels}}} {_number(s.value)}" if labels else f"{s.name} {_number(s.value)}"
            )
    return "\n".join(lines) + "\n"


def check_metrics(
    report: Mapping[str, Any] | None, exit_code: int, finished_at: float, duration: float
) -> list[Metric]:
    """Metrics for one ``sonic check`` run: its report (``--format json``) and its exit code.

    The verdict comes from the exit code (0 passed), so a check that crashed before writing a
    report still reports failure. Per-check gauges come from the report when there is one.
    """
    metrics = [
        Metric(
            "sonic_check_success",
            "1 when every check of the deployment passed, else 0.",
            (Sample("sonic_check_success", 1.0 if exit_code == 0 else 0.0),),
        ),
        Metric(
            "sonic_check_exit_code",
            "Exit code of sonic check (0 passed, 1 a check failed, 2 could not run).",
            (Sample("sonic_check_exit_code", float(exit_code)),),
        ),
        Metric(
            "sonic_check_last_run_timestamp_seconds",
            "When the scheduled check finished (Unix time).",
            (Sample("sonic_check_last_run_timestamp_seconds", round(finished_at, 3)),),
        ),
        Metric(
            "sonic_check_duration_seconds",
            "How long the whole check run took.",
            (Sample("sonic_check_duration_seconds", round(duration, 3)),),
        ),
    ]
    checks = report.get("checks") if report else None
    if isinstance(checks, list):
        passed: list[Sample] = []
        seconds: list[Sample] = []
        for item in checks:
            if not isinstance(item, Mapping) or "check" not in item:
                continue
            labels = (("check", str(item["check"])), ("target", str(item.get("target", ""))))
            status = str(item.get("status", ""))
            if status == "skip":
                continue  # skipped checks say why in the report; they are neither pass nor fail
            passed.append(Sample("sonic_check_passed", 1.0 if status == "pass" else 0.0, labels))
            if isinstance(item.get("seconds"), int | float):
                seconds.append(Sample("sonic_check_seconds", float(item["seconds"]), labels))
        if passed:
            metrics.append(
                Metric("sonic_check_passed", "1 when this check passed, 0 when it failed.", tuple(passed))
            )
        if seconds:
            metrics.append(Metric("sonic_check_seconds", "Time one check took.", tuple(seconds)))
    return metrics


def group_path(job: str, grouping: Sequence[tuple[str, str]]) -> str:
    """``/metrics/job/<job>/<label>/<value>...``; values that are not URL-safe use ``@base64``."""
    parts = ["metrics"]
    for name, value in (("job", job), *grouping):
        if not _LABEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid Prometheus label name")
        if value and _SAFE_SEGMENT.match(value):
            parts += [name, value]
        else:  # empty values and ones with '/' need the base64 form
            encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
            parts += [f"{name}@base64", encoded]
    return "/" + "/".join(quote(p, safe="@=") for p in parts)


def push(
    url: str, job: str, grouping: Sequence[tuple[str, str]], text: str, timeout: float = TIMEOUT
) -> None:
    """Replace the group's metrics with ``text`` (HTTP PUT)."""
    target = url.rstrip("/") + group_path(job, grouping)
    try:
        response = httpx.put(
            target, content=text.encode(), headers={"Content-Type": CONTENT_TYPE}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise PushError(f"PUT {target}: {type(exc).__name__}: {exc}", transient=True) from exc
    if not response.is_success:
        raise PushError(
            f"PUT {target}: HTTP {response.status_code}: {response.text.strip()[:200]}",
            transient=response.status_code >= 500,
        )
