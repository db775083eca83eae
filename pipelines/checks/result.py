"""What one check found, and the report of a whole run (table and JSON come from here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """One check against one target (the server, a model, or a Prometheus query).

    ``detail`` is a sentence for people; ``data`` holds the measured numbers for machines
    (latencies in milliseconds, the largest difference from the reference, the query's value).
    """

    check: str
    target: str
    status: Status
    detail: str
    seconds: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 4),
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class Report:
    """Every check of one run against one endpoint, in the order they ran."""

    deployment: str  # experiment/name
    site: str
    endpoint: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when nothing failed (skipped checks do not fail a run; they say why they skipped)."""
        return not any(r.failed for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.failed)

    def counts(self) -> dict[Status, int]:
        counts: dict[Status, int] = {"pass": 0, "fail": 0, "skip": 0}
        for r in self.results:
            counts[r.status] += 1
        return counts

    def result(self, check: str, target: str = "") -> CheckResult | None:
        """The result of ``check`` on ``target`` (for tests and callers that branch on one check)."""
        return next((r for r in self.results if r.check == check and r.target == target), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "site": self.site,
            "endpoint": self.endpoint,
            "passed": self.passed,
            "counts": self.counts(),
            "checks": [r.as_dict() for r in self.results],
        }
