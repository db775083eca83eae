"""Benchmark rendering: per-deployment render time at 1 / 10 / 100 / 1,000 deployments, and
``sonic render --check`` on the example tree.

Not a test: it prints a table (``--markdown`` prints rows for docs/benchmarks.md). The
deployments are the example placements (every example deployment at every one of its sites)
cycled and renamed, so each size renders the same mix of GPU/CPU, KEDA/fixed, CVMFS/PVC/baked,
JWT, ingress and operator/plain-Prometheus sites. "Render" is everything ``sonic render`` does
per deployment in memory: all objects (Triton, Envoy bootstrap and Deployment, KEDA,
monitoring and dashboard, security, Argo CD hook), grouped into files and dumped to YAML.

Run:  .venv/bin/python bench/render_bench.py [--sizes 1,10,100,1000] [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import (  # noqa: E402
    Placement,
    Site,
    load_tree,
    names,
)
from pipelines.modelrepo.freshness import expected_config_sha256  # noqa: E402
from pipelines.modelrepo.lock import Lock, LockedModel, content_digest  # noqa: E402
from pipelines.render import DeploymentInputs, _files_of, render_site_deployment  # noqa: E402
from pipelines.render.envoy.bootstrap import envoy_config, envoy_yaml  # noqa: E402
from pipelines.render.inputs import read_deployment_inputs  # noqa: E402


def _lock(p: Placement) -> Lock | None:
    built = [m for m in p.models if m.artifact is not None]
    if not built:
        return None
    models = tuple(
        LockedModel(
            m.name,
            tuple(m.versions),
            m.artifact.source,
            m.artifact.sha256,
            m.artifact.size or 1,
            expected_config_sha256(m, p) or "0" * 64,  # what a build would lock: render accepts it as fresh
        )
        for m in sorted(built, key=lambda m: m.name)
        if m.artifact is not None
    )
    return Lock(p.experiment, p.name, content_digest(p.experiment, p.name, models), models)


def workload(n: int) -> list[tuple[Placement, Site, DeploymentInputs]]:
    tree = load_tree(ROOT)
    base = tree.placements_at()
    out = []
    for i in range(n):
        p = base[i % len(base)]
        q = p.model_copy(update={"name": f"{p.name[:28]}-{i}"})
        out.append((q, tree.sites[q.site], read_deployment_inputs(q, _lock(q))))  # files read here, not timed
    return out


def render_all(items: list[tuple[Placement, Site, DeploymentInputs]]) -> int:
    files = 0
    for p, site, inputs in items:
        files += len(_files_of(render_site_deployment(p, site, inputs), names.rendered_dir(p), "bench"))
    return files


def envoy_only(items: list[tuple[Placement, Site, DeploymentInputs]]) -> None:
    for p, site, _ in items:
        envoy_yaml(envoy_config(p, site))


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def time_render(n: int, repeat: int) -> tuple[float, float, float]:
    """(total, per deployment, of which the Envoy bootstrap per deployment) in seconds."""
    items = workload(n)
    render_all(items[: min(n, 7)])  # warm-up: imports, caches
    total = _median_time(lambda: render_all(items), repeat)
    envoy = _median_time(lambda: envoy_only(items), repeat)
    return total, total / n, envoy / n


def time_check_in_process(repeat: int) -> float:
    """What --check does after start-up: load and validate the tree, render it, read and compare the files."""
    from pipelines.cli.render import read_tree, unified_diff
    from pipelines.config.repository import load_repository
    from pipelines.render import read_inputs, render_tree

    runs = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        tree = load_tree(ROOT)
        fresh = render_tree(tree, read_inputs(tree, load_repository(ROOT)))
        unified_diff(read_tree(ROOT), fresh)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs[1:])


def time_check(repeat: int) -> float:
    sonic = Path(sys.executable).parent / "sonic"
    cmd = [str(sonic), "render", "--check", "--root", str(ROOT)]
    if os.path.exists("/usr/bin/taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        # Exit 1 (a stale committed tree) takes the same time: render, read, compare, diff.
        done = subprocess.run(cmd, check=False, capture_output=True, timeout=300)
        if done.returncode not in (0, 1):
            raise SystemExit(f"sonic render --check failed: {done.stderr.decode()}")
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,100,1000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append((n, *time_render(n, args.repeat)))
    check = time_check(args.repeat)
    in_process = time_check_in_process(args.repeat)
    if args.markdown:
        print("| deployments | render total | per deployment | of which envoy.yaml |")
        print("|---:|---:|---:|---:|")
        for n, total, per, envoy in rows:
            print(f"| {n:,} | {total * 1000:,.0f} ms | {per * 1000:.1f} ms | {envoy * 1000:.1f} ms |")
        print(
            f"\n`sonic render --check` on the example tree (7 deployments at 4 sites): {check:.2f} s wall "
            f"as a command, {in_process * 1000:.0f} ms of it the check itself (in process)"
        )
        return
    print(f"{'deployments':>12} {'total':>10} {'per deployment':>15} {'envoy.yaml':>11}")
    for n, total, per, envoy in rows:
        print(f"{n:>12,} {total * 1000:>8,.0f}ms {per * 1000:>13.2f}ms {envoy * 1000:>9.2f}ms")
    print(f"sonic render --check (example tree): {check:.2f} s wall (median of {args.repeat})")
    print(f"  of which the check itself, in process: {in_process * 1000:.0f} ms")


if __name__ == "__main__":
    main()
