"""Helpers for the model-repository tests: real ONNX models and small configuration trees."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from pipelines.config.checked import check_tree
from pipelines.config.model import Deployment
from pipelines.config.tree import Tree

SITE = {
    "name": "lab",
    "description": "a test site",
    "argocd": {"server": "https://argocd.lab.example.org:6443"},
    "kubernetes": {"minVersion": "1.29", "maxVersion": "1.31"},
    "gpuClasses": {"T4": {"products": ["Tesla-T4"]}},
    "storage": {"cvmfs": {"hostPath": "/cvmfs"}, "snapshots": {"claim": "sonic-model-snapshots"}},
    "prometheus": {"url": "http://prometheus.lab.svc:9090", "namespace": "monitoring"},
    "experiments": {"demo": {"namespaces": ["demo"], "gpuQuota": 4}},
}
EXPERIMENT = {
    "name": "demo",
    "owners": ["@demo"],
    "contact": "demo@example.org",
    "sites": {"lab": {"namespaces": ["demo"]}},
}

# The interface of `tagger_model`: several inputs, float and int, a dynamic dimension, two outputs.
TAGGER_INPUTS = [
    {"name": "points", "dtype": "FP32", "dims": [-1, 3]},
    {"name": "ids", "dtype": "INT64", "dims": [4]},
]
TAGGER_OUTPUTS = [
    {"name": "score", "dtype": "FP32", "dims": [2]},
    {"name": "total", "dtype": "INT64", "dims": [1]},
]


def tagger_model(seed: int = 1, *, batch: bool = True) -> bytes:
    """points [batch, n, 3] FP32 and ids [batch, 4] INT64 -> score [batch, 2] FP32, total [batch, 1] INT64."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    v = rng.standard_normal((4, 2)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(v, "v"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["points"], ["mean"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["s0"]),
        helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["idsf", "v"], ["s1"]),
        helper.make_node("Add", ["s0", "s1"], ["score"]),
        helper.make_node("ReduceSum", ["ids", "axis1"], ["total"], keepdims=1),
    ]
    b: list[str | int] = ["batch"] if batch else [1]
    graph = helper.make_graph(
        nodes,
        "tagger",
        [
            helper.make_tensor_value_info("points", TensorProto.FLOAT, [*b, "n", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [*b, 4]),
        ],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [*b, 2]),
            helper.make_tensor_value_info("total", TensorProto.INT64, [*b, 1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sonic-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tagger_entry(model_bytes: bytes, source: str = "models/tagger.onnx", **overrides: Any) -> dict[str, Any]:
    """A deployment's model entry for the tagger with a correct declaration (override any key; None drops it)."""
    entry: dict[str, Any] = {
        "name": "tagger",
        "artifact": {"source": source, "sha256": sha256(model_bytes), "size": len(model_bytes)},
        "maxBatchSize": 8,
        "inputs": copy.deepcopy(TAGGER_INPUTS),
        "outputs": copy.deepcopy(TAGGER_OUTPUTS),
        "dynamicBatching": {"preferredBatchSize": [4], "maxQueueDelay": "100us"},
        "instances": {"kind": "CPU", "count": 1},
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def blob_entry(data: bytes, name: str = "blob") -> dict[str, Any]:
    """An opaque (TorchScript) model: copied and hashed like any artifact, no graph to check."""
    return {
        "name": name,
        "platform": "pytorch_libtorch",
        "artifact": {"source": f"models/{name}.pt", "sha256": sha256(data), "size": len(data)},
        "maxBatchSize": 0,
        "inputs": [{"name": "INPUT__0", "dtype": "FP32", "dims": [-1, 4]}],
        "outputs": [{"name": "OUTPUT__0", "dtype": "FP32", "dims": [-1]}],
        "instances": {"kind": "CPU"},
    }


class Repo:
    """A configuration tree in a temporary folder: one site (lab), one experiment (demo)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "gitops" / "sites").mkdir(parents=True, exist_ok=True)
        (root / "experiments" / "demo").mkdir(parents=True, exist_ok=True)
        self.write("gitops/sites/lab.yaml", yaml.safe_dump(SITE, sort_keys=False))
        self.write("experiments/demo/experiment.yaml", yaml.safe_dump(EXPERIMENT, sort_keys=False))

    def write(self, rel: str, data: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
        return path

    def deployment(self, models: list[dict[str, Any]], name: str = "tagger", **extra: Any) -> Path:
        body: dict[str, Any] = {
            "name": name,
            "experiment": "demo",
            "sites": {"lab": {"namespace": "demo"}},
            "replicas": 1,
            "triton": {"resources": {"cpu": "1", "memory": "1Gi"}, "server": {"strictModelConfig": True}},
            "models": models,
            "envoy": {"admissionGate": {"enabled": False}},
        }
        body.update(extra)
        return self.write(f"experiments/demo/{name}.yaml", yaml.safe_dump(body, sort_keys=False))

    def load(self, name: str = "tagger") -> tuple[Tree, Deployment]:
        """The tree and deployment, ignoring cross-file errors (the model builder must stand alone)."""
        tree, _errors = check_tree(self.root)
        return tree, tree.deployment(name)

    def line(self, *path: str | int, name: str = "tagger") -> int:
        """The line of a setting in the deployment file, as the loader locates it."""
        tree, deployment = self.load(name)
        return tree.documents[deployment.source].locate(tuple(path)).line

    def errors(self) -> list[str]:
        return [str(e) for e in check_tree(self.root)[1]]


def tree_files(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``path`` (to prove a snapshot unchanged)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
