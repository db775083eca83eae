"""Generate the `minimal` example's model: a small b-tagging MLP in ONNX, plus reference data.

The real CMS b-tag models are large and live in CVMFS; this one has the same interface shape
(per-jet global features and a fixed-size list of charged-candidate features in, class
probabilities out) and is small enough to commit. Deterministic: fixed seed, fixed opset.

    python scripts/make_minimal_model.py   # rewrites experiments/cms/models and checks files
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1] / "experiments" / "cms"
N_GLOBAL, N_CPF, N_CPF_FEAT, HIDDEN, CLASSES = 15, 25, 16, 32, 6


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(20261129)
    n_in = N_GLOBAL + N_CPF * N_CPF_FEAT
    w1 = (rng.standard_normal((n_in, HIDDEN)) / np.sqrt(n_in)).astype(np.float32)
    b1 = rng.standard_normal(HIDDEN).astype(np.float32) * 0.1
    w2 = (rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = rng.standard_normal(CLASSES).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    inits.append(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Reshape", ["cpf_features", "flat_shape"], ["cpf_flat"]),
        helper.make_node("Concat", ["global_features", "cpf_flat"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["softmax"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "btag_mini",
        [
            helper.make_tensor_value_info("global_features", TensorProto.FLOAT, ["batch", N_GLOBAL]),
            helper.make_tensor_value_info("cpf_features", TensorProto.FLOAT, ["batch", N_CPF, N_CPF_FEAT]),
        ],
        [helper.make_tensor_value_info("softmax", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sonic-gitops"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    model_path = ROOT / "models" / "btag_mini" / "model.onnx"
    model_path.parent.mkdir(parents=True, exist_ok=True)
    data = build().SerializeToString(deterministic=True)
    model_path.write_bytes(data)
    rng = np.random.default_rng(7)
    inputs = {
        "global_features": rng.standard_normal((4, N_GLOBAL)).astype(np.float32),
        "cpf_features": rng.standard_normal((4, N_CPF, N_CPF_FEAT)).astype(np.float32),
    }
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (softmax,) = session.run(["softmax"], inputs)
    checks = ROOT / "checks"
    checks.mkdir(exist_ok=True)
    np.savez(checks / "btag_mini_inputs.npz", **inputs)
    np.savez(checks / "btag_mini_outputs.npz", softmax=softmax)
    print(f"{model_path}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
