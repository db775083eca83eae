"""Benchmark the data plane: direct to Triton vs. a SuperSONIC-style Envoy vs. our rendered Envoy.

Not a test: it prints tables (``--markdown`` prints the rows for docs/benchmarks.md). In one run,
on a private copy of the example tree, with the same client (pipelines.checks.load.run_load:
N threads, one gRPC connection each, the ``minimal`` model at batch 4):

1. throughput, p50/p99 latency and Envoy's CPU time per request at concurrency 1, 8, 32 for
   (a) direct:      the clients spread over the 2 Triton replicas themselves;
   (b) supersonic:  Envoy as SuperSONIC renders it (bench/supersonic_envoy.py supersonic_style_config:
                    plain proxy, LEAST_REQUEST, no health checks, outlier detection or retries;
                    no --concurrency, so one worker per hardware thread);
   (c) rendered:    our rendered Envoy with every feature on: JWT (RS256 token on every request,
                    keys inlined), request and connection token buckets (limits far above the
                    load), the admission gate (configured; ModelInfer never enters it),
                    health checks, outlier detection, retries with a budget, circuit breakers,
                    JSON access log, OpenTelemetry tracing at 1 % (to a collector port nobody
                    listens on: spans are built and dropped); as many workers as the rendered
                    Deployment gives it (envoy_workers: 1 for the 500m CPU limit).
   The three are measured in turn within each round (a, b, c, a, b, c, ...) and the median over
   the rounds is reported, so slow drift of the shared machine hits all three alike.
2. one of 2 replicas killed (SIGKILL of its process group) 1 s into a 3,000-request run at
   concurrency 8, on fresh replicas for each Envoy: failed client requests are counted for (b),
   for (c) as declared (retries.minRetryConcurrency 32, the schema default) and for (c) with
   minRetryConcurrency 3 (the budget alone, as the first version of the schema had it).

Run:  .venv/bin/python bench/dataplane.py [--rounds 3] [--requests 2000] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from h2load_client import H2Load  # noqa: E402
from h2load_client import available as h2load_available  # noqa: E402
from supersonic_envoy import supersonic_style_config  # noqa: E402

from pipelines.checks.connection import Endpoint  # noqa: E402
from pipelines.checks.load import LoadResult, run_load  # noqa: E402
from pipelines.checks.tensors import plans, synthetic_inputs  # noqa: E402
from pipelines.config import Tree, load_tree  # noqa: E402
from pipelines.config.model import Placement  # noqa: E402
from pipelines.local import envoy as local_envoy  # noqa: E402
from pipelines.local import stack  # noqa: E402
from pipelines.local.processes import free_ports, stop  # noqa: E402
from pipelines.local.state import StackState  # noqa: E402

ISSUER = "https://idp.example.org/realms/bench"
AUDIENCE = "sonic-bench"
CONCURRENCIES = (1, 8, 32)
KILL_AFTER = 1.0  # seconds into the kill run
KILL_REQUESTS = 3000
KILL_CONCURRENCY = 8
GENERATORS = {
    "python": "the Python client (pipelines.checks.load, one thread and gRPC connection per client)",
    "h2load": "h2load (nghttp2, C; one pre-serialised ModelInfer, successes counted by Triton)",
}


def every_feature(min_retry_concurrency: int) -> Callable[[dict[str, Any]], None]:
    """Edit minimal.yaml: switch on everything the Envoy renderer can do."""

    def edit(d: dict[str, Any]) -> None:
        envoy = d.setdefault("envoy", {})
        envoy["auth"] = {"jwt": {"issuer": ISSUER, "jwksUri": f"{ISSUER}/certs", "audiences": [AUDIENCE]}}
        envoy["rateLimit"] = {
            "connections": {"maxTokens": 10000, "tokensPerFill": 10000, "fillInterval": "1s"},
            "requests": {"maxTokens": 100000, "tokensPerFill": 100000, "fillInterval": "1s"},
        }
        envoy["admissionGate"] = {"threshold": 100, "onPrometheusError": "open"}
        envoy["accessLog"] = True
        envoy["tracing"] = {"samplingRate": 0.01, "collector": f"127.0.0.1:{free_ports(1)[0]}"}
        envoy["retries"] = {"minRetryConcurrency": min_retry_concurrency}

    return edit


def make_tree(base: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> tuple[Tree, Placement]:
    root = base / name
    shutil.copytree(ROOT / "experiments", root / "experiments", ignore=shutil.ignore_patterns("locks"))
    shutil.copytree(ROOT / "gitops" / "sites", root / "gitops" / "sites")
    path = root / "experiments" / "cms" / "minimal.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    tree = load_tree(root)
    return tree, tree.deployment("cms/minimal").placements[0]


def keys() -> tuple[str, str]:
    """(JWKS document, a token it verifies)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = json.dumps({"keys": [{**jwk, "kid": "bench", "alg": "RS256", "use": "sig"}]})
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "iat": now, "exp": now + 7200}
    return jwks, jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


def cpu_ns(pid: int) -> int:
    """CPU time all threads of ``pid`` have run, in ns (schedstat: exact, unlike clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


@contextmanager
def supersonic_envoy(state: StackState) -> Iterator[tuple[str, int, int]]:
    """SuperSONIC's plain proxy in front of the stack's Tritons; yields (endpoint, admin port, pid)."""
    port, admin = free_ports(2)
    config = supersonic_style_config([("127.0.0.1", t.grpc) for t in state.tritons], port, admin)
    # SuperSONIC passes no --concurrency: one worker per hardware thread.
    proc = local_envoy.run_config(config, state.run_dir, "envoy-supersonic", hosts=0, workers=None)
    try:
        yield f"127.0.0.1:{port}", admin, proc.pid
    finally:
        stop(proc)


COUNTERS = (
    "upstream_rq_retry_success",
    "upstream_rq_retry_overflow",
    "upstream_rq_retry_limit_exceeded",
    "outlier_detection.ejections_enforced_total",
)


def envoy_counters(admin: int) -> dict[str, int]:
    """The retry and ejection counters of the Triton cluster, from Envoy's admin interface."""
    body = httpx.get(
        f"http://127.0.0.1:{admin}/stats", params={"filter": r"^cluster\.triton\."}, timeout=5
    ).text
    values = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
    return {name: int(values.get(f"cluster.triton.{name}", "0")) for name in COUNTERS}


class Client:
    """The one load generator every configuration is measured with."""

    def __init__(self, p: Placement):
        plan = plans(p)[0]
        self.model = plan.name
        self.arrays = synthetic_inputs(plan)
        self.dtypes = {t.name: t.dtype for t in plan.model.inputs}

    def run(self, endpoints: list[Endpoint], concurrency: int, requests: int) -> LoadResult:
        return run_load(
            endpoints,
            self.model,
            self.arrays,
            self.dtypes,
            concurrency=concurrency,
            requests=requests,
            deadline=300,
        )


def measure(args: argparse.Namespace, base: Path, jwks: str, token: str) -> dict[str, dict[str, Any]]:
    """Figures per load generator: {client: {"<path>/<concurrency>": {...}}}."""
    tree, p = make_tree(base, "perf", every_feature(3))
    client = Client(p)
    generators = ["python", "h2load"] if args.client == "both" else [args.client]
    keys = [(g, k, c) for g in generators for c in CONCURRENCIES for k in "abc"]
    results: dict[tuple[str, str, int], list[LoadResult]] = {key: [] for key in keys}
    cpu: dict[tuple[str, str, int], list[float]] = {key: [] for key in keys}
    with (
        stack.running(tree, p, root=tree.root, replicas=2, with_prometheus=False, jwks=jwks) as state,
        supersonic_envoy(state) as (supersonic, _, supersonic_pid),
    ):
        # Envoy's own CPU time per request: far steadier than throughput on a shared machine.
        pids = {"a": 0, "b": supersonic_pid, "c": state.process("envoy").pid}
        targets = {
            "a": [Endpoint.parse(t.grpc_address) for t in state.tritons],
            "b": [Endpoint.parse(supersonic)],
            "c": [Endpoint.parse(state.endpoint, token=token)],
        }
        h2 = H2Load(
            client.model,
            client.arrays,
            client.dtypes,
            [f"http://{t.metrics_address}/metrics" for t in state.tritons],
        )
        runners: dict[str, Callable[[str, int, int], LoadResult]] = {
            "python": lambda key, c, n: client.run(targets[key], c, n),
            "h2load": lambda key, c, n: h2.run(
                [f"{e.host}:{e.port}" for e in targets[key]], c, n, token=token if key == "c" else None
            ),
        }
        try:
            for g in generators:  # warm-up: connections, JWT cache, Python imports
                for key in targets:
                    runners[g](key, 8, 400)
            for r in range(args.rounds):
                for g, key, c in keys:
                    before = cpu_ns(pids[key]) if pids[key] else 0
                    res = runners[g](key, c, args.requests)
                    if pids[key]:
                        cpu[g, key, c].append((cpu_ns(pids[key]) - before) / 1000 / max(1, res.requests))
                    results[g, key, c].append(res)
                    print(
                        f"round {r + 1} {g:<6} c={c:<2} {key}: mean {res.mean_ms:.3f} ms p50 {res.p50_ms:.3f} ms "
                        f"p99 {res.p99_ms:.3f} ms {res.throughput:.0f}/s errors {res.errors}",
                        file=sys.stderr,
                    )
        finally:
            h2.close()
    summary: dict[str, dict[str, Any]] = {g: {} for g in generators}
    for (g, key, c), runs in results.items():
        summary[g][f"{key}/{c}"] = {
            "mean_ms": statistics.median(r.mean_ms for r in runs),
            "p50_ms": statistics.median(r.p50_ms for r in runs),
            "p99_ms": statistics.median(r.p99_ms for r in runs),
            "throughput": statistics.median(r.throughput for r in runs),
            "errors": sum(r.errors for r in runs),
            "requests": sum(r.requests for r in runs),
            "envoy_cpu_us": statistics.median(cpu[g, key, c]) if cpu[g, key, c] else None,
        }
    return summary


def kill_run(state: StackState, endpoints: list[Endpoint], client: Client, admin: int) -> dict[str, Any]:
    killer = threading.Timer(KILL_AFTER, stack.kill_triton, args=(state, 1))
    killer.start()
    try:
        result = client.run(endpoints, KILL_CONCURRENCY, KILL_REQUESTS)
    finally:
        killer.cancel()
    return {"result": result, "envoy": envoy_counters(admin)}


def kills(base: Path, jwks: str, token: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tree, p = make_tree(base, "kill-b", lambda d: None)
    client = Client(p)
    with (
        stack.running(tree, p, root=tree.root, replicas=2, with_prometheus=False) as state,
        supersonic_envoy(state) as (supersonic, admin, _),
    ):
        out["b"] = kill_run(state, [Endpoint.parse(supersonic)], client, admin)
    for label, min_retry in (("c", 32), ("c-minretry3", 3)):
        tree, p = make_tree(base, f"kill-{label}", every_feature(min_retry))
        with stack.running(tree, p, root=tree.root, replicas=2, with_prometheus=False, jwks=jwks) as state:
            out[label] = kill_run(
                state, [Endpoint.parse(state.endpoint, token=token)], client, state.envoy_admin
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--client",
        choices=["python", "h2load", "both"],
        default="both" if h2load_available() else "python",
        help="load generator (default: both when h2load is installed)",
    )
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()
    jwks, token = keys()
    with tempfile.TemporaryDirectory(prefix="sonic-bench-") as tmp:
        base = Path(tmp)
        perf = measure(args, base, jwks, token)
        killed = kills(base, jwks, token)
    names = {
        "a": "(a) direct to Triton",
        "b": "(b) SuperSONIC-style Envoy",
        "c": "(c) rendered Envoy, all features",
    }
    head = (
        "| concurrency | path | throughput (req/s) | mean (ms) | p50 (ms) | p99 (ms) "
        "| Envoy CPU (µs/request) | errors / requests |\n|---|---|---|---|---|---|---|---|"
    )
    for generator, figures in perf.items():
        print(f"\nLoad generator: {GENERATORS[generator]}\n")
        print(head)
        for c in CONCURRENCIES:
            for key in "abc":
                m = figures[f"{key}/{c}"]
                envoy_cpu = "-" if m["envoy_cpu_us"] is None else f"{m['envoy_cpu_us']:.0f}"
                print(
                    f"| {c} | {names[key]} | {m['throughput']:.0f} | {m['mean_ms']:.3f} | {m['p50_ms']:.3f} "
                    f"| {m['p99_ms']:.3f} | {envoy_cpu} | {m['errors']} / {m['requests']} |"
                )
        print()
        for key in "bc":
            added_mean = figures[f"{key}/1"]["mean_ms"] - figures["a/1"]["mean_ms"]
            added_p50 = figures[f"{key}/1"]["p50_ms"] - figures["a/1"]["p50_ms"]
            print(f"added by {names[key]} at concurrency 1: mean {added_mean:.3f} ms, p50 {added_p50:.3f} ms")
        extra = figures["c/1"]["p50_ms"] - figures["b/1"]["p50_ms"]
        print(f"p50 of (c) minus p50 of (b) at concurrency 1: {extra:.3f} ms (goal <= 0.05 ms)")
        for c in CONCURRENCIES[1:]:
            ratio = figures[f"c/{c}"]["throughput"] / figures[f"b/{c}"]["throughput"]
            print(f"throughput (c)/(b) at concurrency {c}: {ratio:.2f} (goal >= 1)")
    print()
    print(
        "| one of 2 replicas killed 1 s into 3,000 requests at concurrency 8 | failed requests | p99 (ms) "
        "| Envoy: retried OK / retries refused by the budget / ejections |"
    )
    print("|---|---|---|---|")
    labels = {
        "b": "(b) SuperSONIC-style Envoy",
        "c": "(c) rendered Envoy, minRetryConcurrency 32 (default)",
        "c-minretry3": "(c) rendered Envoy, minRetryConcurrency 3",
    }
    for key, run in killed.items():
        res, env = run["result"], run["envoy"]
        kinds = ", ".join(f"{k} x{n}" for k, n in res.error_kinds.items()) or "-"
        counters = (
            f"{env['upstream_rq_retry_success']} / "
            f"{env['upstream_rq_retry_overflow'] + env['upstream_rq_retry_limit_exceeded']} / "
            f"{env['outlier_detection.ejections_enforced_total']}"
        )
        print(f"| {labels[key]} | {res.errors} / {res.requests} ({kinds}) | {res.p99_ms:.3f} | {counters} |")
    if args.json:
        kill_raw = {
            k: {**v["result"].summary(), "error_kinds": dict(v["result"].error_kinds), "envoy": v["envoy"]}
            for k, v in killed.items()
        }
        raw = {"perf": perf, "kill": kill_raw}
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    print(
        f"\n(machine: {os.cpu_count()} cores; rounds {args.rounds}; {args.requests} requests per measurement)"
    )


if __name__ == "__main__":
    main()
