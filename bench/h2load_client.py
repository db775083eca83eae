"""A load generator that is not the bottleneck: nghttp2's ``h2load`` sending one pre-serialised gRPC call.

The Python client (``pipelines.checks.load``) builds and parses every message in the interpreter and
saturates the machine's cores before Envoy does. ``h2load`` (Debian ``nghttp2-client``) is a C
HTTP/2 benchmarking client: it sends the same body on every stream, so the ModelInfer request is
serialised once, framed as gRPC (RFC: the gRPC-over-HTTP/2 protocol, a 1-byte compressed flag and a
4-byte big-endian length before the protobuf) and sent with ``content-type: application/grpc`` and
``te: trailers``.

``h2load`` counts HTTP statuses, not gRPC ones: a call refused by Envoy (JWT, route) or failed by
Triton still answers HTTP 200 with ``grpc-status`` in the trailers. So the successful calls are
counted where gRPC success is decided: the difference in Triton's own
``nv_inference_request_success`` counter for the model over the run, summed over the replicas;
every other call is an error. Latencies come from ``h2load --log-file`` (one line per request:
start time, HTTP status, elapsed µs).

Concurrency N means N connections with one stream each (``-c N -m 1``), like N SONIC clients.
Clients talking to several Triton replicas directly get one h2load process per replica (h2load
sends every URI to one authority), the clients split between them.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import numpy as np
from tritonclient.grpc import service_pb2

from pipelines.checks.load import LoadResult

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def available() -> bool:
    return shutil.which("h2load") is not None


def grpc_body(model: str, arrays: Mapping[str, np.ndarray], datatypes: Mapping[str, str]) -> bytes:
    """One ModelInfer request, framed as a gRPC message (uncompressed)."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in arrays.items():
        tensor = request.inputs.add()
        tensor.name = name
        tensor.datatype = datatypes[name]
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    message = request.SerializeToString()
    return struct.pack(">BI", 0, len(message)) + message


def successes(metrics_urls: Sequence[str], model: str) -> int:
    """Triton's count of successful inference requests for ``model``, over all replicas."""
    pattern = re.compile(
        rf'^nv_inference_request_success\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} (\S+)$', re.M
    )
    return sum(int(float(m)) for url in metrics_urls for m in pattern.findall(httpx.get(url, timeout=5).text))


class H2Load:
    """Runs h2load against gRPC endpoints (``host:port``) and reports a LoadResult."""

    def __init__(
        self,
        model: str,
        arrays: Mapping[str, np.ndarray],
        datatypes: Mapping[str, str],
        metrics_urls: Sequence[str],
    ):
        self.model = model
        self.metrics_urls = list(metrics_urls)
        self._dir = Path(tempfile.mkdtemp(prefix="sonic-h2load-"))
        self.body = self._dir / "request.grpc"
        self.body.write_bytes(grpc_body(model, arrays, datatypes))

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def run(
        self, endpoints: Sequence[str], concurrency: int, requests: int, token: str | None = None
    ) -> LoadResult:
        headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        if token:
            headers += ["-H", f"authorization: Bearer {token}"]
        split = [
            concurrency // len(endpoints) + (i < concurrency % len(endpoints)) for i in range(len(endpoints))
        ]
        jobs = [(ep, c) for ep, c in zip(endpoints, split, strict=True) if c]
        before = successes(self.metrics_urls, self.model)
        start = time.monotonic()
        procs = []
        for i, (endpoint, clients) in enumerate(jobs):
            n = requests * clients // concurrency
            log = self._dir / f"log-{i}.tsv"
            argv = [
                "h2load",
                *("-n", str(max(n, clients)), "-c", str(clients), "-m", "1", "-t", "1"),
                *("-d", str(self.body), "--log-file", str(log)),
                *headers,
                f"http://{endpoint}{METHOD}",
            ]
            procs.append(
                (subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), log)
            )
        latencies: list[float] = []
        sent = 0
        for proc, log in procs:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"h2load failed ({proc.returncode}):\n{out}")
            for line in log.read_text().splitlines():
                _start, _status, elapsed_us = line.split("\t")[:3]
                latencies.append(int(elapsed_us) / 1000)
                sent += 1
            log.unlink()
        seconds = time.monotonic() - start
        ok = successes(self.metrics_urls, self.model) - before
        errors = max(0, sent - ok)
        # The log does not say which calls failed: with errors, the latencies include them.
        return LoadResult(
            requests=sent,
            errors=errors,
            error_kinds={"grpc-status not OK": errors} if errors else {},
            latencies_ms=tuple(latencies),
            seconds=seconds,
        )
