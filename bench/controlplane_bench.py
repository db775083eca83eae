"""Control-plane tier timings: start (warm binaries), and applying the whole committed tree.

    python bench/controlplane_bench.py [--markdown]

Starts the same control plane the `controlplane` tests use (etcd, kube-apiserver, controller
manager, scheduler, kwok, KEDA, Argo Workflows controller), times each phase, applies every
object of every cluster group (dry run, then for real), and stops it. Tool build times are
printed by scripts/controlplane-tools.sh itself (`--list` shows the recorded ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.controlplane.test_apply import cluster_groups, namespaces, pss_labels  # noqa: E402
from tests.support import controlplane as cpl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="sonic-cp-bench-") as tmp:
        t0 = time.monotonic()
        cp = cpl.start_control_plane(Path(tmp) / "cp", cpl.tool_bindir())
        rows.append(
            (
                "start: etcd, apiserver, controllers, kwok, CRDs, KEDA, Argo (warm binaries)",
                time.monotonic() - t0,
            )
        )
        try:
            groups = cluster_groups()
            objs = [o for g in groups.values() for o in g]
            t1 = time.monotonic()
            for _, group in groups.items():
                for ns in sorted(namespaces(group)):
                    cpl.ensure_namespace(cp, ns, pss_labels())
                for _, obj in group:
                    cpl.apply_object(cp, obj, dry_run=True)
                for _, obj in group:
                    cpl.apply_object(cp, obj)
            rows.append(
                (f"apply the whole tree: {len(objs)} objects, dry run + apply", time.monotonic() - t1)
            )
        finally:
            t2 = time.monotonic()
            cpl.stop_control_plane(cp)
            rows.append(("stop (by PID)", time.monotonic() - t2))
    if args.markdown:
        print("| phase | seconds |\n|---|---:|")
        for name, secs in rows:
            print(f"| {name} | {secs:.1f} |")
    else:
        for name, secs in rows:
            print(f"{secs:7.1f} s  {name}")


if __name__ == "__main__":
    main()
