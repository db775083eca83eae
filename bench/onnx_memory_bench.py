"""Peak memory of checking an ONNX graph: the whole model loaded (before) against the wire-level scan (now).

Writes a ~200 MB ONNX model (one 200 MB FP32 weight feeding a MatMul, the usual shape of a real
network's file: almost all weights), then measures, each in a fresh interpreter, the peak
resident set size (``VmHWM`` in ``/proc/self/status``) of:

* ``load``: what ``read_graph`` did before: ``onnx.load(path, load_external_data=False)`` and
  ``onnx.checker.check_model`` on the loaded model;
* ``scan``: ``pipelines.config.modelconfig.onnxcheck.read_onnx`` (memory-mapped, weights skipped);
* ``baseline``: the interpreter with the same imports, reading nothing.

Usage::

    .venv/bin/python bench/onnx_memory_bench.py [--mb 200] [--markdown]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import sys
from pathlib import Path
import onnx
from pipelines.config.modelconfig import onnxcheck
path, how = Path(sys.argv[1]), sys.argv[2]
if how == "load":
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
elif how == "scan":
    header, graph = onnxcheck.read_onnx(path)
    assert graph.inputs and header.ir_version
# VmHWM: the peak of this process's own memory (ru_maxrss would carry the parent's over exec).
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
"""


def write_model(path: Path, mb: int) -> int:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows = mb * 1024 * 1024 // (4 * 256)
    weight = numpy_helper.from_array(np.ones((256, rows), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", rows])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path.stat().st_size


def peak_kib(path: Path, how: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), how], check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        size = write_model(path, args.mb)
        rows = [(how, peak_kib(path, how)) for how in ("baseline", "load", "scan")]
    base = rows[0][1]
    if args.markdown:
        print(f"model file: {size / 1e6:.0f} MB\n")
        print("| method | peak RSS | above baseline |")
        print("|---|---:|---:|")
        for how, kib in rows:
            print(f"| {how} | {kib / 1024:.0f} MiB | {(kib - base) / 1024:.0f} MiB |")
    else:
        for how, kib in rows:
            print(f"{how:9s} {kib / 1024:8.0f} MiB  (+{(kib - base) / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
