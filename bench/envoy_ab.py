"""Where does the rendered Envoy's extra cost go? A/B of (b) against variants of (c).

Not a test. One run starts the 2 Triton replicas of the ``minimal`` model once (the same stack
and client as ``bench/dataplane.py``) and, in front of them, one Envoy per variant, all at the
same time (idle Envoys cost next to nothing). Each variant is (c) -- the rendered bootstrap with
every feature on -- with ONE thing removed or changed, so its difference from (c) is that
thing's cost. (a) direct and (b) SuperSONIC-style are measured alongside as references.

Each round measures every variant once, at concurrency 8 (throughput) and 1 (p50), in a fresh
random order (seeded), so drift of the shared machine and position in the round hit every
variant alike. Reported per variant: the median over rounds and the spread (25th-75th
percentile), plus the median of the per-round ratio to (b) measured in the same round.

After the rounds, selected Envoy admin counters of (c) show whether the JWT cache, the Lua
filter, retries and the token buckets did what the variant list assumes.

Run:  .venv/bin/python bench/envoy_ab.py [--rounds 8] [--requests 2000] [--variants c,c-no-jwt,...]
      .venv/bin/python bench/envoy_ab.py --list
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import random
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dataplane import Client, cpu_ns, every_feature, keys, make_tree  # noqa: E402
from supersonic_envoy import supersonic_style_config  # noqa: E402

from pipelines.checks.connection import Endpoint  # noqa: E402
from pipelines.checks.load import LoadResult  # noqa: E402
from pipelines.local import envoy as local_envoy  # noqa: E402
from pipelines.local import stack  # noqa: E402
from pipelines.local.processes import free_ports, stop  # noqa: E402
from pipelines.local.state import StackState  # noqa: E402
from pipelines.render.envoy.gate import LUA_FILTER  # noqa: E402
from pipelines.render.envoy.k8s import envoy_workers  # noqa: E402
from pipelines.render.envoy.listeners import GATE_ROUTE_PATH  # noqa: E402

Json = dict[str, Any]
Edit = Callable[[Json, Path], None]


# --- where things live in a rendered bootstrap -----------------------------------------------------


def _grpc_listener(cfg: Json) -> Json:
    listener: Json = next(x for x in cfg["static_resources"]["listeners"] if x["name"] == "grpc")
    return listener


def _hcm(cfg: Json) -> Json:
    chain = _grpc_listener(cfg)["filter_chains"][0]["filters"]
    hcm: Json = next(f for f in chain if f["name"] == "envoy.filters.network.http_connection_manager")
    typed: Json = hcm["typed_config"]
    return typed


def _triton(cfg: Json) -> Json:
    cluster: Json = next(c for c in cfg["static_resources"]["clusters"] if c["name"] == "triton")
    return cluster


def _routes(cfg: Json) -> list[Json]:
    routes: list[Json] = _hcm(cfg)["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def _drop_http_filter(cfg: Json, name: str) -> None:
    hcm = _hcm(cfg)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != name]


# --- the variants: each edits a copy of (c) ----------------------------------------------------------


def no_access_log(cfg: Json, _: Path) -> None:
    _hcm(cfg).pop("access_log", None)


def access_log_file(cfg: Json, run_dir: Path) -> None:
    """Same JSON line, written by Envoy's file logger (flushed by its own thread) instead of stdout."""
    for log in _hcm(cfg)["access_log"]:
        fmt = log["typed_config"]["log_format"]
        log["name"] = "envoy.access_loggers.file"
        log["typed_config"] = {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(run_dir / "access-ab.log"),
            "log_format": fmt,
        }


def access_log_text(cfg: Json, _: Path) -> None:
    """Same fields as one plain-text line (no JSON formatter)."""
    for log in _hcm(cfg)["access_log"]:
        fields = log["typed_config"]["log_format"]["json_format"]
        text = " ".join(str(v) for v in fields.values()) + "\n"
        log["typed_config"]["log_format"] = {"text_format_source": {"inline_string": text}}


def no_jwt(cfg: Json, _: Path) -> None:
    _drop_http_filter(cfg, "envoy.filters.http.jwt_authn")


def no_jwt_cache(cfg: Json, _: Path) -> None:
    """JWT verified with RSA on every request (what happens when the cache misses)."""
    for f in _hcm(cfg)["http_filters"]:
        if f["name"] == "envoy.filters.http.jwt_authn":
            for provider in f["typed_config"]["providers"].values():
                provider.pop("jwt_cache_config", None)


def no_lua(cfg: Json, _: Path) -> None:
    """No Lua filter in the chain at all (the gate route stays, ungated)."""
    _drop_http_filter(cfg, LUA_FILTER)
    for route in _routes(cfg):
        route.pop("typed_per_filter_config", None)
        route.pop("metadata", None)


def lua_matcher(cfg: Json, _: Path) -> None:
    """The Lua filter wrapped in ExtensionWithMatcher: skipped unless :path starts with the gate's."""
    t = "type.googleapis.com/envoy."
    path = {"@type": t + "type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": ":path"}
    off_gate_path = {
        "not_matcher": {
            "single_predicate": {
                "input": {"name": "path", "typed_config": path},
                "value_match": {"prefix": GATE_ROUTE_PATH},
            }
        }
    }
    skip = {
        "name": "skip",
        "typed_config": {"@type": t + "extensions.filters.common.matcher.action.v3.SkipFilter"},
    }
    matcher = {"matcher_list": {"matchers": [{"predicate": off_gate_path, "on_match": {"action": skip}}]}}
    filters = _hcm(cfg)["http_filters"]
    for i, f in enumerate(filters):
        if f["name"] == LUA_FILTER:
            wrapped = {
                "@type": t + "extensions.common.matching.v3.ExtensionWithMatcher",
                "extension_config": f,
                "xds_matcher": matcher,
            }
            filters[i] = {"name": LUA_FILTER, "typed_config": wrapped}


def no_retry(cfg: Json, _: Path) -> None:
    for route in _routes(cfg):
        route["route"].pop("retry_policy", None)


def no_tracing(cfg: Json, _: Path) -> None:
    _hcm(cfg).pop("tracing", None)


def no_request_id(cfg: Json, _: Path) -> None:
    """Tracing off AND no x-request-id generated (the access log's request_id becomes '-')."""
    no_tracing(cfg, _)
    _hcm(cfg)["generate_request_id"] = False


def no_rate_limits(cfg: Json, _: Path) -> None:
    _drop_http_filter(cfg, "envoy.filters.http.local_ratelimit")
    _grpc_listener(cfg).pop("listener_filters", None)


def no_connection_limit(cfg: Json, _: Path) -> None:
    chain = _grpc_listener(cfg)["filter_chains"][0]
    chain["filters"] = [f for f in chain["filters"] if f["name"] != "envoy.filters.network.connection_limit"]


def no_normalize(cfg: Json, _: Path) -> None:
    hcm = _hcm(cfg)
    for key in ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action"):
        hcm.pop(key, None)


def no_remote_address(cfg: Json, _: Path) -> None:
    _hcm(cfg).pop("use_remote_address", None)


def no_health(cfg: Json, _: Path) -> None:
    """No health checks, outlier detection, circuit breakers or panic threshold."""
    cluster = _triton(cfg)
    for key in ("health_checks", "outlier_detection", "circuit_breakers", "common_lb_config"):
        cluster.pop(key, None)


def no_stream_duration(cfg: Json, _: Path) -> None:
    for route in _routes(cfg):
        route["route"].pop("max_stream_duration", None)


def no_overload(cfg: Json, _: Path) -> None:
    cfg.pop("overload_manager", None)


def h2_windows(cfg: Json, _: Path) -> None:
    """Small HTTP/2 windows (1 MiB stream / 4 MiB connection) both ways instead of Envoy's 256 MiB."""
    opts = {"initial_stream_window_size": 1 << 20, "initial_connection_window_size": 4 << 20}
    _hcm(cfg).setdefault("http2_protocol_options", {}).update(opts)
    h2 = _triton(cfg)["typed_extension_protocol_options"]
    for v in h2.values():
        v["explicit_http_config"]["http2_protocol_options"].update(opts)


def lb_choice_count(n: int) -> Edit:
    def edit(cfg: Json, _: Path) -> None:
        _triton(cfg)["least_request_lb_config"] = {"choice_count": n}

    return edit


def round_robin(cfg: Json, _: Path) -> None:
    _triton(cfg)["lb_policy"] = "ROUND_ROBIN"


def no_idle_timeout(cfg: Json, _: Path) -> None:
    _hcm(cfg).pop("common_http_protocol_options", None)


def stats_lean(cfg: Json, _: Path) -> None:
    """Envoy's default tag extraction off (fewer regexes when stats are created)."""
    cfg["stats_config"] = {"use_all_default_tags": False}


BARE_EDITS: tuple[Edit, ...] = (
    no_access_log,
    no_jwt,
    no_lua,
    no_retry,
    no_request_id,
    no_rate_limits,
    no_connection_limit,
    no_normalize,
    no_remote_address,
    no_health,
    no_stream_duration,
    no_overload,
    no_idle_timeout,
)


def bare(cfg: Json, run_dir: Path) -> None:
    """(c) minus every feature above: what remains should cost what (b) costs."""
    for edit in BARE_EDITS:
        edit(cfg, run_dir)


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    edit: Edit | None = None  # None: (a) or (b), not an edit of (c)
    # Worker threads; None: as the reference runs -- (c) and its edits as rendered (envoy_workers:
    # 1 for the 500m CPU limit here), (b) with Envoy's default, one per hardware thread (2 here).
    workers: int | None = None
    token: bool = True  # the client sends the bearer token


VARIANTS: tuple[Variant, ...] = (
    Variant("a", "direct to Triton (reference)", token=False),
    Variant("b", "SuperSONIC-style Envoy (reference)", token=False),
    Variant("b-token", "(b), client sends the bearer token anyway (client-side cost of the header)"),
    Variant("c", "rendered Envoy, every feature on", lambda cfg, d: None),
    Variant("c-no-accesslog", "(c) without the access log", no_access_log),
    Variant("c-accesslog-file", "(c), access log to a file (file logger) instead of stdout", access_log_file),
    Variant("c-accesslog-text", "(c), access log as a text line instead of JSON", access_log_text),
    Variant("c-no-jwt", "(c) without jwt_authn (client still sends the token)", no_jwt),
    Variant("c-no-jwt-cache", "(c) with jwt_authn but no JWT cache (RSA verify per request)", no_jwt_cache),
    Variant("c-no-lua", "(c) without the Lua filter in the chain", no_lua),
    Variant(
        "c-lua-matcher", "(c), Lua filter skipped by an ExtensionWithMatcher off the gate path", lua_matcher
    ),
    Variant("c-no-retry", "(c) without the retry policy", no_retry),
    Variant("c-no-tracing", "(c) without tracing", no_tracing),
    Variant("c-no-reqid", "(c) without tracing and without x-request-id generation", no_request_id),
    Variant("c-no-ratelimit", "(c) without both token buckets", no_rate_limits),
    Variant("c-no-connlimit", "(c) without the connection_limit filter", no_connection_limit),
    Variant(
        "c-no-normalize", "(c) without normalize_path/merge_slashes/escaped-slash rejection", no_normalize
    ),
    Variant("c-no-remote-addr", "(c) without use_remote_address", no_remote_address),
    Variant("c-no-health", "(c) without health checks, outlier detection, circuit breakers", no_health),
    Variant("c-no-overload", "(c) without the overload manager's connection monitor", no_overload),
    Variant("c-h2-windows", "(c) with 1 MiB/4 MiB HTTP/2 windows both ways", h2_windows),
    Variant("c-lb-choice5", "(c) with LEAST_REQUEST choice_count 5", lb_choice_count(5)),
    Variant("c-round-robin", "(c) with ROUND_ROBIN", round_robin),
    Variant("c-stats-lean", "(c) with default stats tag extraction off", stats_lean),
    Variant("c-2workers", "(c) with --concurrency 2 (one per core, as (b))", lambda cfg, d: None, workers=2),
    Variant("b-1worker", "(b) with --concurrency 1 (as (c))", workers=1, token=False),
    Variant("c-bare", "(c) minus every feature (all the no-* edits at once)", bare),
)
DEFAULT = (
    "a,b,b-token,c,c-no-accesslog,c-no-jwt,c-no-jwt-cache,c-no-lua,c-no-retry,c-no-reqid,"
    "c-no-ratelimit,c-no-connlimit,c-no-normalize,c-no-health,c-bare"
)


@contextlib.contextmanager
def envoys(
    state: StackState, p: Any, site: Any, jwks: str, token: str, variants: list[Variant]
) -> Iterator[dict[str, tuple[list[Endpoint], int, int]]]:
    """Start one Envoy per variant; yields {name: (client endpoints, admin port, Envoy pid)} (0, 0
    for (a))."""
    upstreams = [("127.0.0.1", t.grpc) for t in state.tritons]
    out: dict[str, tuple[list[Endpoint], int, int]] = {}
    with contextlib.ExitStack() as stack_:
        for v in variants:
            tok = token if v.token else None
            if v.name == "a":
                out[v.name] = ([Endpoint.parse(t.grpc_address) for t in state.tritons], 0, 0)
                continue
            port, admin, stats, prom = free_ports(4)
            workers = v.workers
            if v.edit is None:
                cfg = supersonic_style_config(upstreams, port, admin)
                hosts = 0
            else:
                cfg = local_envoy.local_config(
                    p,
                    site,
                    endpoints=upstreams,
                    listen_port=port,
                    admin_port=admin,
                    stats_port=stats,
                    prometheus_url=f"http://127.0.0.1:{prom}",
                    jwks=jwks,
                )
                cfg = copy.deepcopy(cfg)
                v.edit(cfg, state.run_dir)
                hosts = len(upstreams) if "health_checks" in _triton(cfg) else 0
                workers = workers or envoy_workers(p)
            proc = local_envoy.run_config(
                cfg, state.run_dir, f"envoy-{v.name}", hosts=hosts, workers=workers, timeout=30
            )
            stack_.callback(stop, proc)
            out[v.name] = ([Endpoint.parse(f"127.0.0.1:{port}", token=tok)], admin, proc.pid)
        yield out


def counters(admin: int, pattern: str) -> dict[str, str]:
    body = httpx.get(f"http://127.0.0.1:{admin}/stats", params={"filter": pattern}, timeout=5).text
    return dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    ap.add_argument("--variants", default=DEFAULT, help="comma-separated; --list shows them")
    ap.add_argument("--concurrency", default="8,1", help="throughput at the first, p50 at every one")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    by_name = {v.name: v for v in VARIANTS}
    if args.list:
        for v in VARIANTS:
            print(f"{v.name:20} {v.what}")
        return
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; --list shows them")
    if "b" not in names:
        names.insert(0, "b")
    variants = [by_name[n] for n in names]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rng = random.Random(args.seed)
    jwks, token = keys()
    results: dict[tuple[str, int], list[LoadResult]] = {(n, c): [] for n in names for c in concurrencies}
    cpu_us: dict[tuple[str, int], list[float]] = {(n, c): [] for n in names for c in concurrencies}
    with tempfile.TemporaryDirectory(prefix="sonic-envoy-ab-") as tmp:
        tree, p = make_tree(Path(tmp), "ab", every_feature(32))
        client = Client(p)
        site = tree.sites[p.site]
        with (
            stack.running(tree, p, root=tree.root, replicas=2, with_prometheus=False, jwks=jwks) as state,
            envoys(state, p, site, jwks, token, variants) as targets,
        ):
            for eps, _, _ in targets.values():  # warm-up: connections, JWT cache, imports
                client.run(eps, 8, 300)
            for r in range(args.rounds):
                order = names[:]
                rng.shuffle(order)
                for c in concurrencies:
                    for n in order:
                        eps, _, pid = targets[n]
                        before = cpu_ns(pid) if pid else 0
                        res = client.run(eps, c, args.requests)
                        used = cpu_ns(pid) - before if pid else 0
                        results[(n, c)].append(res)
                        cpu_us[(n, c)].append(used / 1000 / max(1, res.requests))
                        print(
                            f"round {r + 1} c={c} {n:18} {res.throughput:7.0f}/s p50 {res.p50_ms:.3f} ms "
                            f"errors {res.errors}",
                            file=sys.stderr,
                        )
            admin_c = targets["c"][1] if "c" in targets else 0
            stats = (
                counters(admin_c, r"jwt_authn|admission_gate|local_rate_limit|retry|rq_total$")
                if admin_c
                else {}
            )
    c_hi = concurrencies[0]
    print(f"rounds {args.rounds}, {args.requests} requests per measurement; spread = 25th-75th percentile\n")
    head = (
        f"| variant | Envoy CPU c={c_hi} (us/request) | minus (c) same round (us) "
        f"| throughput c={c_hi} (req/s) | vs (b) same round | vs (c) same round |"
    )
    sep = "|---|---:|---:|---:|---:|---:|"
    for c in concurrencies[1:]:
        head += f" p50 c={c} (ms) | p50 c={c} minus (b) (ms) | Envoy CPU c={c} (us/request) |"
        sep += "---:|---:|---:|"
    print(head)
    print(sep)
    for n in names:
        tp = [x.throughput for x in results[(n, c_hi)]]
        vs_b = [
            x.throughput / b.throughput for x, b in zip(results[(n, c_hi)], results[("b", c_hi)], strict=True)
        ]
        cpu = cpu_us[(n, c_hi)]
        row = f"| {n} | {_fmt(quartiles(cpu), '.1f')} |"
        if "c" in names:
            dc = [x - y for x, y in zip(cpu, cpu_us[("c", c_hi)], strict=True)]
            row += f" {_fmt(quartiles(dc), '+.1f')} |"
        else:
            row += " - |"
        row += f" {_fmt(quartiles(tp), '.0f')} | {_fmt(quartiles(vs_b), '.2f')} |"
        if "c" in names:
            vs_c = [
                x.throughput / cc.throughput
                for x, cc in zip(results[(n, c_hi)], results[("c", c_hi)], strict=True)
            ]
            row += f" {_fmt(quartiles(vs_c), '.2f')} |"
        else:
            row += " - |"
        for c in concurrencies[1:]:
            p50 = [x.p50_ms for x in results[(n, c)]]
            dp = [x.p50_ms - b.p50_ms for x, b in zip(results[(n, c)], results[("b", c)], strict=True)]
            row += f" {_fmt(quartiles(p50), '.3f')} | {_fmt(quartiles(dp), '+.3f')} |"
            row += f" {_fmt(quartiles(cpu_us[(n, c)]), '.1f')} |"
        print(row)
    if stats:
        print("\n(c)'s Envoy counters after the run:")
        for key, value in sorted(stats.items()):
            if value.strip() not in ("0", "No recorded values"):
                print(f"  {key}: {value}")


def _fmt(q: tuple[float, float, float], spec: str) -> str:
    lo, mid, hi = q
    return f"{mid:{spec}} ({lo:{spec}}..{hi:{spec}})"


if __name__ == "__main__":
    main()
