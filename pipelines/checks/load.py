"""A short, bounded burst of inference requests from N concurrent clients.

Used by the load-probe check, by the integration tests (a replica killed under load) and by
``bench/dataplane.py``, so all three measure with the same client. Each worker owns its own
gRPC connection, like N independent SONIC clients; every request has a deadline, and no new
request starts after the overall deadline.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as triton

from pipelines.checks.connection import Endpoint, code_name, describe
from pipelines.checks.tensors import Array


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one burst: latencies of the successful requests, errors by kind."""

    requests: int  # sent
    errors: int
    error_kinds: Mapping[str, int]
    latencies_ms: tuple[float, ...]  # successful requests only, in completion order
    seconds: float  # wall time of the burst
    first_error: str = ""
    stopped_early: bool = False  # the overall deadline ended the burst
    error_times: tuple[float, ...] = field(default=(), repr=False)  # seconds since start

    @property
    def ok(self) -> int:
        return self.requests - self.errors

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """Latency percentile ``q`` (0 to 100) of successful requests; NaN when none succeeded."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def mean_ms(self) -> float:
        """Mean latency of successful requests; NaN when none succeeded."""
        return float(np.mean(self.latencies_ms)) if self.latencies_ms else float("nan")

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "throughput_rps": round(self.throughput, 1),
            "seconds": round(self.seconds, 3),
        }


def run_load(
    endpoint: Endpoint | Sequence[Endpoint],
    model: str,
    arrays: Mapping[str, Array],
    datatypes: Mapping[str, str],
    *,
    concurrency: int,
    requests: int,
    deadline: float,
    request_timeout: float | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``requests`` inferences to ``model`` from ``concurrency`` clients; stop at ``deadline`` seconds.

    ``arrays`` are the input tensors (same for every request) and ``datatypes`` their Triton
    datatypes. With several endpoints (clients talking to Triton replicas directly), client
    ``i`` uses endpoint ``i mod n``. Never raises for a failed request: failures are counted by
    gRPC status.

    ``on_progress(n)``, when given, is called after each request completes (succeeded or
    failed) with ``n``, the number completed so far; each ``n`` is passed exactly once, in the
    worker thread that completed it, before that worker takes its next request (other workers go
    on meanwhile). Tests use it to act at a point of the burst counted in requests, not seconds,
    e.g. to kill a replica after the 200th. An exception it raises ends that worker and is
    re-raised by ``run_load`` once the other workers are done.
    """
    endpoints = [endpoint] if isinstance(endpoint, Endpoint) else list(endpoint)
    timeout = request_timeout if request_timeout is not None else endpoints[0].timeout
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    error_times: list[float] = []
    first_error: list[str] = []
    completed = 0
    start = time.perf_counter()
    stop_at = start + deadline
    stopped = threading.Event()

    def take() -> bool:
        nonlocal issued
        with lock:
            if issued >= requests:
                return False
            if time.perf_counter() >= stop_at:
                stopped.set()
                return False
            issued += 1
            return True

    def done() -> int:
        nonlocal completed  # called with ``lock`` held
        completed += 1
        return completed

    def worker(ep: Endpoint) -> None:
        client = ep.client()
        try:
            inputs = []
            for name, arr in arrays.items():
                t = triton.InferInput(name, list(arr.shape), datatypes[name])
                t.set_data_from_numpy(arr)
                inputs.append(t)
            headers = ep.headers()
            while take():
                t0 = time.perf_counter()
                try:
                    client.infer(model, inputs, client_timeout=timeout, headers=headers)
                except Exception as exc:  # every failure is a data point, never a crash
                    now = time.perf_counter()
                    with lock:
                        kinds[code_name(exc) or type(exc).__name__] += 1
                        error_times.append(now - start)
                        if not first_error:
                            first_error.append(describe(exc))
                        n = done()
                else:
                    elapsed = (time.perf_counter() - t0) * 1000.0
                    with lock:
                        latencies.append(elapsed)
                        n = done()
                if on_progress is not None:
                    on_progress(n)  # outside the lock: it may take its time (kill a process)
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sonic-load") as pool:
        futures = [pool.submit(worker, endpoints[i % len(endpoints)]) for i in range(concurrency)]
        for f in futures:
            f.result()
    seconds = time.perf_counter() - start
    errors = sum(kinds.values())
    return LoadResult(
        requests=issued,
        errors=errors,
        error_kinds=dict(sorted(kinds.items())),
        latencies_ms=tuple(latencies),
        seconds=seconds,
        first_error=first_error[0] if first_error else "",
        stopped_early=stopped.is_set(),
        error_times=tuple(sorted(error_times)),
    )
