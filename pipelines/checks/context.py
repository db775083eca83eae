"""What every check needs: the endpoint, one shared client, and the run's deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import tritonclient.grpc as triton

from pipelines.checks.connection import Endpoint
from pipelines.checks.result import CheckResult, Status

MIN_CALL_TIMEOUT = 0.2  # a call with less time than this would only report a deadline


@dataclass
class Context:
    """Shared by the checks of one run; ``deadline`` is a ``time.monotonic()`` instant."""

    endpoint: Endpoint
    client: triton.InferenceServerClient
    deadline: float

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self, wanted: float | None = None) -> float:
        """Deadline for the next call: the per-call timeout, cut to what the run has left."""
        return max(MIN_CALL_TIMEOUT, min(wanted or self.endpoint.timeout, self.left()))

    @property
    def expired(self) -> bool:
        return self.left() <= MIN_CALL_TIMEOUT


def timed(check: str, target: str, body: Callable[[], tuple[Status, str, dict[str, object]]]) -> CheckResult:
    """Run ``body`` and wrap its (status, detail, data) in a CheckResult with its duration."""
    t0 = time.perf_counter()
    status, detail, data = body()
    return CheckResult(check, target, status, detail, time.perf_counter() - t0, data)


def skipped(check: str, target: str, why: str) -> CheckResult:
    return CheckResult(check, target, "skip", why)
