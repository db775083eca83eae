"""What one doctor check found, and the report of a whole run (the CLI only formats these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Finding:
    """One check against one target (a namespace, a GPU class, a file's object ...).

    ``message`` says what was found; ``fix`` (failures only) says what to do about it, as a
    command where one exists, because the reader is a site admin in front of a cluster.
    """

    check: str
    target: str
    status: Status
    message: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


def passed(check: str, target: str, message: str) -> Finding:
    return Finding(check, target, "pass", message)


def failed(check: str, target: str, message: str, fix: str) -> Finding:
    return Finding(check, target, "fail", message, fix)


def skipped(check: str, target: str, message: str) -> Finding:
    return Finding(check, target, "skip", message)


@dataclass(frozen=True)
class Report:
    """Every finding of one run against one cluster, in the order the checks ran."""

    site: str
    server: str  # the API server URL the kubeconfig pointed at
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        """True when nothing failed (skipped checks say why they did not apply)."""
        return not any(f.failed for f in self.findings)

    def counts(self) -> dict[Status, int]:
        counts: dict[Status, int] = {"pass": 0, "fail": 0, "skip": 0}
        for f in self.findings:
            counts[f.status] += 1
        return counts

    def of(self, check: str) -> tuple[Finding, ...]:
        """The findings of one check (for tests and callers that branch on one check)."""
        return tuple(f for f in self.findings if f.check == check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "server": self.server,
            "passed": self.passed,
            "counts": self.counts(),
            "checks": [f.as_dict() for f in self.findings],
        }
