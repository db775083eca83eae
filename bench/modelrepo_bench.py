"""Benchmark the model-repository build against ``cp -r`` + ``sha256sum`` of the same files.

Not a test: it prints a table (``--markdown`` prints rows for docs/benchmarks.md). In a temporary
folder it writes N random artifacts (about 1 GiB in all by default), a one-site configuration
tree whose deployment declares them (opaque TorchScript files: copied and verified, no graph to
parse), then, in the same run and alternating, for each repeat:

* baseline: ``cp -r models/ copy/`` then ``sha256sum copy/*`` (two processes, timed together);
* build: ``build()`` in process into an empty store (copy + hash in one pass, in parallel,
  publish the snapshot, write the lock), and the same as a ``sonic build-models`` command
  (interpreter start-up and imports included);
* no-change rebuild: the same build again on the same store (in process, and as a command);
  it re-hashes every file of the snapshot before reusing it (issue 11, finding 16), so this
  row is the cost of "always re-hash before publishing or serving";
* the same with ``--local`` (what ``sonic local up`` runs before serving: two snapshots that
  hard-link the same artifacts, each inode hashed once), and ``--verify`` (re-hash snapshot,
  local variant and cache entries of the lock, in process).

Page cache: every source was just written, so all runs read from memory; the copies go to the
same disk, and ``sync`` runs (untimed) before each timed step so that no run pays for the
writeback of another. Neither side forces its copies to disk (cp does not fsync either).
Everything is deleted afterwards.

Run:  .venv/bin/python bench/modelrepo_bench.py [--files 8] [--size-mib 128] [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config.checked import check_tree  # noqa: E402
from pipelines.modelrepo.build import BuildOptions, build, default_workers  # noqa: E402
from pipelines.modelrepo.integrity import remove_tree  # noqa: E402
from pipelines.modelrepo.lock import Lock  # noqa: E402
from pipelines.modelrepo.verify import verify_lock  # noqa: E402

CHUNK = 16 * 1024 * 1024


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes; return their sha256."""
    import hashlib

    h = hashlib.sha256()
    rng = __import__("numpy").random.default_rng(int.from_bytes(os.urandom(8), "little"))
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.bytes(min(CHUNK, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def make_tree(root: Path, files: int, size: int) -> None:
    (root / "gitops" / "sites").mkdir(parents=True)
    exp = root / "experiments" / "bench"
    (exp / "models").mkdir(parents=True)
    site = {
        "name": "lab",
        "argocd": {"server": "https://argocd.lab.example.org"},
        "kubernetes": {"minVersion": "1.29", "maxVersion": "1.31"},
        "storage": {"snapshots": {"claim": "snapshots"}},
        "experiments": {"bench": {"namespaces": ["bench"], "gpuQuota": 0}},
    }
    (root / "gitops" / "sites" / "lab.yaml").write_text(yaml.safe_dump(site))
    experiment = {
        "name": "bench",
        "owners": ["@bench"],
        "contact": "b@example.org",
        "sites": {"lab": {"namespaces": ["bench"]}},
    }
    (exp / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    models: list[dict[str, Any]] = []
    for i in range(files):
        name = f"model{i:02d}"
        digest = write_random(exp / "models" / f"{name}.pt", size)
        models.append(
            {
                "name": name,
                "platform": "pytorch_libtorch",
                "artifact": {"source": f"models/{name}.pt", "sha256": digest, "size": size},
                "inputs": [{"name": "INPUT__0", "dtype": "FP32", "dims": [-1]}],
                "outputs": [{"name": "OUTPUT__0", "dtype": "FP32", "dims": [-1]}],
                "instances": {"kind": "CPU"},
            }
        )
    deployment = {
        "name": "bench",
        "experiment": "bench",
        "sites": {"lab": {"namespace": "bench"}},
        "replicas": 1,
        "models": models,
        "envoy": {"admissionGate": {"enabled": False}},
    }
    (exp / "bench.yaml").write_text(yaml.safe_dump(deployment, sort_keys=False))


def timed(fn: Any) -> float:
    # Flush what earlier runs left dirty first, so no run pays for another's writeback.
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def baseline(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    files = sorted(str(p) for p in dst.iterdir())
    subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)


def build_in_process(root: Path, store: Path, local: bool = False) -> Lock:
    tree, errors = check_tree(root)
    assert not errors, errors
    result = build(tree, tree.deployment("bench"), BuildOptions(dest=store, local=local))
    assert result.lock is not None
    return result.lock


def verify_in_process(store: Path, lock: Lock) -> None:
    result = verify_lock(store, lock, workers=default_workers())
    assert result.ok, result.mismatches


def build_command(root: Path, store: Path) -> None:
    sonic = Path(sys.executable).parent / "sonic"
    cmd = [str(sonic)] if sonic.exists() else [sys.executable, "-c", "from pipelines.cli import main; main()"]
    subprocess.run(
        [*cmd, "build-models", "bench", "--root", str(root), "--dest", str(store)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--size-mib", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where to put the temporary files (default: $TMPDIR)"
    )
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    total = args.files * size
    results: dict[str, list[float]] = {
        k: []
        for k in ("baseline", "build", "command", "rebuild", "rebuild_command", "rebuild_local", "verify")
    }
    with tempfile.TemporaryDirectory(prefix="sonic-bench-", dir=args.workdir) as tmp:
        root = Path(tmp) / "repo"
        make_tree(root, args.files, size)
        src = root / "experiments" / "bench" / "models"
        for r in range(args.repeat):
            copy, store, store2 = Path(tmp) / f"copy{r}", Path(tmp) / f"store{r}", Path(tmp) / f"cmdstore{r}"
            results["baseline"].append(timed(lambda copy=copy: baseline(src, copy)))
            shutil.rmtree(copy)
            results["build"].append(timed(lambda store=store: build_in_process(root, store)))
            results["rebuild"].append(timed(lambda store=store: build_in_process(root, store)))
            lock = build_in_process(root, store, local=True)  # publishes the local variant (untimed)
            results["rebuild_local"].append(timed(lambda store=store: build_in_process(root, store, True)))
            results["verify"].append(timed(lambda store=store, lock=lock: verify_in_process(store, lock)))
            remove_tree(store)
            (root / "experiments" / "bench" / "locks").exists() and shutil.rmtree(
                root / "experiments" / "bench" / "locks"
            )
            results["command"].append(timed(lambda store2=store2: build_command(root, store2)))
            results["rebuild_command"].append(timed(lambda store2=store2: build_command(root, store2)))
            remove_tree(store2)
            shutil.rmtree(root / "experiments" / "bench" / "locks", ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    mib_s = {k: total / (1024 * 1024) / med[k] for k in ("baseline", "build", "command")}
    rows = [
        ("cp -r + sha256sum (baseline)", med["baseline"], mib_s["baseline"], "1.00x"),
        ("build, in process", med["build"], mib_s["build"], f"{mib_s['build'] / mib_s['baseline']:.2f}x"),
        (
            "sonic build-models (command)",
            med["command"],
            mib_s["command"],
            f"{mib_s['command'] / mib_s['baseline']:.2f}x",
        ),
    ]
    rebuild = [
        ("no-change rebuild, in process", med["rebuild"], med["rebuild"] / med["build"]),
        ("no-change rebuild, command", med["rebuild_command"], med["rebuild_command"] / med["command"]),
        (
            "no-change rebuild --local (local up), in process",
            med["rebuild_local"],
            med["rebuild_local"] / med["build"],
        ),
        ("--verify, in process", med["verify"], med["verify"] / med["build"]),
    ]
    head = f"{args.files} files x {args.size_mib} MiB = {total / 2**30:.2f} GiB, {default_workers()} workers, median of {args.repeat}"
    if args.markdown:
        print(f"{head}\n")
        print("| run | time | throughput | vs baseline |\n|---|---:|---:|---:|")
        for name, t, tp, rel in rows:
            print(f"| {name} | {t:.2f} s | {tp:.0f} MiB/s | {rel} |")
        print("\n| no-change rebuild | time | of a full build |\n|---|---:|---:|")
        for name, t, frac in rebuild:
            print(f"| {name} | {t * 1000:.0f} ms | {frac * 100:.1f} % |")
    else:
        print(head)
        for name, t, tp, rel in rows:
            print(f"  {name:34s} {t:7.2f} s  {tp:7.0f} MiB/s  {rel}")
        for name, t, frac in rebuild:
            print(f"  {name:48s} {t * 1000:7.0f} ms  {frac * 100:5.1f} % of a full build")
        print("  raw:", {k: [round(x, 3) for x in v] for k, v in results.items()})


if __name__ == "__main__":
    main()
