"""Benchmark ``sonic validate`` on generated trees of 10, 100 and 1,000 deployments over 10 sites.

Not a test: it prints a table (and, with ``--markdown``, the rows for docs/benchmarks.md).
The trees are made from the real examples in ``experiments/`` (each deployment is one of them
with a new name, its own ingress hosts and sites rotated over ten generated sites), so they
exercise the same schemas, defaults, overrides and cross-file rules as the examples do.

Two figures per size, both on one core:
  * ``load_tree`` in process (median of several runs, after one warm-up);
  * wall time of ``taskset -c 0 sonic validate`` as a subprocess (interpreter start included).

Run:  .venv/bin/python bench/validate_bench.py [--sizes 10,100,1000] [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import copy
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

from pipelines.config import load_tree  # noqa: E402

N_SITES = 10
EXPERIMENTS = ("cms", "atlas", "icecube", "lhcb", "dune")
# Every example deployment, by file; its data files (models/, checks/) are copied along.
TEMPLATES = (
    "cms/particlenet.yaml",
    "cms/particlenet-anvil.yaml",
    "cms/minimal.yaml",
    "atlas/traccc.yaml",
    "atlas/exatrkx.yaml",
    "icecube/cnn-classifier.yaml",
)
HEADER = "# yaml-language-server: $schema=../../schemas/deployment.schema.json\n"


def site_name(k: int) -> str:
    return f"site{k % N_SITES:02d}"


def domain(k: int) -> str:
    return f"{site_name(k)}.sonic.example.org"


def make_site(k: int) -> dict[str, Any]:
    """A site offering everything the templates use: GPU classes, CVMFS, NFS, PVCs, ingress, Prometheus."""
    return {
        "name": site_name(k),
        "description": f"generated site {k}",
        "argocd": {"server": f"https://{site_name(k)}.k8s.example.org:6443"},
        "kubernetes": {"minVersion": "1.29", "maxVersion": "1.33"},
        "gpuClasses": {
            "A10": {"products": ["NVIDIA-A10"]},
            "A100": {
                "nodeSelector": {"gpu-pool": "a100"},
                "products": ["NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-SXM4-80GB"],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "L4": {"products": ["NVIDIA-L4"]},
            "L40": {"products": ["NVIDIA-L40"]},
        },
        "storage": {
            "cvmfs": {"storageClass": "cvmfs"},
            "nfs": {"server": f"nfs.{domain(k)}", "path": "/export/sonic"},
            "pvcs": ["atlas-models"],
            "snapshots": {"claim": "sonic-model-snapshots"},
        },
        "ingress": {
            "className": "nginx",
            "domain": domain(k),
            "namespace": "ingress-nginx",
            "publishesStatus": True,
            "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"},
            "defaultCertificate": True,
        },
        "prometheus": {
            "url": f"https://prometheus.{domain(k)}",
            "namespace": "monitoring",
            "auth": {"secretRef": {"name": "prometheus-token", "key": "token"}},
        },
        "experiments": {e: {"namespaces": [f"{e}-sonic"], "gpuQuota": 1_000_000} for e in EXPERIMENTS},
    }


def make_experiment(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"generated experiment {name}",
        "owners": [f"@{name}/sonic"],
        "contact": f"{name}-sonic@example.org",
        "sites": {site_name(k): {"namespaces": [f"{name}-sonic"]} for k in range(N_SITES)},
    }


def make_deployment(i: int, template: dict[str, Any], experiment: str) -> dict[str, Any]:
    """Template ``i``: new name and experiment, its sites rotated onto generated ones, unique hosts."""
    dep = copy.deepcopy(template)
    name = f"{dep['name']}-{i:04d}"
    dep["name"], dep["experiment"] = name, experiment
    sites = {}
    for j, placement in enumerate(dep["sites"].values()):
        site = i + j
        placement = {**placement, "namespace": f"{experiment}-sonic"}
        ingress = placement.get("envoy", {}).get("ingress")
        if ingress is not None:
            ingress["host"] = f"{name}.{domain(site)}"
        sites[site_name(site)] = placement
    dep["sites"] = sites
    ingress = dep.get("envoy", {}).get("ingress")
    if ingress is not None:
        ingress["host"] = f"{name}.{domain(i)}"
    return dep


def generate(root: Path, n_deployments: int) -> None:
    """Write a configuration tree of ``n_deployments`` deployments over N_SITES sites under ``root``."""
    sites_dir = root / "gitops" / "sites"
    sites_dir.mkdir(parents=True)
    for k in range(N_SITES):
        body = yaml.safe_dump(make_site(k), sort_keys=False)
        (sites_dir / f"{site_name(k)}.yaml").write_text(
            "# yaml-language-server: $schema=../../schemas/site.schema.json\n" + body
        )
    templates = [yaml.safe_load((ROOT / "experiments" / t).read_text()) for t in TEMPLATES]
    for exp in EXPERIMENTS:
        folder = root / "experiments" / exp
        folder.mkdir(parents=True)
        (folder / "experiment.yaml").write_text(yaml.safe_dump(make_experiment(exp), sort_keys=False))
        for data in ("models", "checks"):  # artifacts and reference files the minimal template names
            shutil.copytree(ROOT / "experiments" / "cms" / data, folder / data)
    for i in range(n_deployments):
        exp = EXPERIMENTS[i % len(EXPERIMENTS)]
        dep = make_deployment(i, templates[i % len(templates)], exp)
        (root / "experiments" / exp / f"{dep['name']}.yaml").write_text(
            HEADER + yaml.safe_dump(dep, sort_keys=False)
        )


def time_in_process(root: Path, repeat: int) -> tuple[float, int]:
    load_tree(root)  # warm-up: schema compilation and imports are paid once per process
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        tree = load_tree(root)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), len(tree.deployments)


def time_cli(root: Path, repeat: int) -> float:
    sonic = Path(sys.executable).with_name("sonic")
    cmd = [str(sonic), "validate", "experiments", "gitops/sites"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
        runs.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"generated tree is invalid:\n{proc.stdout[:3000]}{proc.stderr[:3000]}")
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000", help="deployment counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown table rows")
    parser.add_argument("--keep", type=Path, help="keep the trees in DIR/tree-<n> (to profile them)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core, like the CLI under taskset
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="sonic-bench-") as tmp:
            root = Path(tmp) if args.keep is None else args.keep / f"tree-{n}"
            if args.keep is not None:
                shutil.rmtree(root, ignore_errors=True)  # a fresh tree each run
            root.mkdir(parents=True, exist_ok=True)
            generate(root, n)
            files = sum(1 for _ in root.rglob("*.yaml"))
            in_proc, found = time_in_process(root, args.repeat)
            assert found == n, f"expected {n} deployments, loaded {found}"
            wall = time_cli(root, args.repeat)
        rows.append((n, files, in_proc, wall))
        print(
            f"{n:>6} deployments  {files:>5} files  load_tree {in_proc:7.3f} s  "
            f"({in_proc / n * 1000:6.2f} ms/deployment)  sonic validate {wall:7.3f} s",
            flush=True,
        )
    if args.markdown:
        print("\n| deployments | files | load_tree (in process) | per deployment | `sonic validate` wall |")
        print("|---:|---:|---:|---:|---:|")
        for n, files, in_proc, wall in rows:
            print(f"| {n:,} | {files:,} | {in_proc:.3f} s | {in_proc / n * 1000:.2f} ms | {wall:.3f} s |")


if __name__ == "__main__":
    main()
