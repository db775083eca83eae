"""Cross-check a Triton model config against the ONNX graph it will serve, with the ``onnx`` package.

What Triton's ONNX Runtime backend would reject at load time (or worse, accept and fail on the
first request) is reported at build time instead: tensor names, data types, ranks and dimensions,
and the batch dimension implied by ``max_batch_size``. Dimension rules, as Triton applies them:

* ``max_batch_size > 0``: the graph's first dimension is the batch and must be dynamic (symbolic
  or unknown); the declared dims describe the remaining ones.
* a declared ``-1`` needs a dynamic graph dimension; a declared size needs the same fixed size or
  a dynamic graph dimension (the config then narrows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigError
from pipelines.modelrepo.pbtxt import dtype_name
from pipelines.modelrepo.where import Where

# ONNX element types that Triton can carry, by Triton's spelling.
ONNX_TO_TRITON: dict[int, str] = {
    TensorProto.BOOL: "BOOL",
    TensorProto.UINT8: "UINT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.INT8: "INT8",
    TensorProto.INT16: "INT16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.FLOAT16: "FP16",
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.STRING: "STRING",
}

Dim = int | str | None  # fixed size, symbolic name, or unknown


@dataclass(frozen=True)
class GraphTensor:
    name: str
    dtype: str  # Triton spelling, or "onnx:<TYPE>" when Triton has no equivalent
    dims: tuple[Dim, ...] | None  # None when the graph records no shape


@dataclass(frozen=True)
class Graph:
    """The interface of an ONNX model: its real inputs (initializers excluded) and outputs."""

    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]


class OnnxError(Exception):
    """The artifact is not a loadable, valid ONNX model."""


def _tensor(vi: onnx.ValueInfoProto) -> GraphTensor:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        return GraphTensor(vi.name, f"onnx:{vi.type.WhichOneof('value')}", None)
    elem_type = int(tt.elem_type)
    elem = ONNX_TO_TRITON.get(elem_type) or f"onnx:{TensorProto.DataType.Name(elem_type)}"
    if not tt.HasField("shape"):
        return GraphTensor(vi.name, elem, None)
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(str(d.dim_param))
        else:
            dims.append(None)
    return GraphTensor(vi.name, elem, tuple(dims))


def read_graph(path: Path) -> Graph:
    """Load and validate the ONNX model at ``path``; raises OnnxError with a readable reason."""
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises protobuf DecodeError, ValidationError, OSError ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxError(f"not a valid ONNX model: {reason}") from None
    graph = model.graph
    initialized = {init.name for init in graph.initializer}
    return Graph(
        inputs=tuple(_tensor(vi) for vi in graph.input if vi.name not in initialized),
        outputs=tuple(_tensor(vi) for vi in graph.output),
    )


def format_dims(dims: Sequence[Dim]) -> str:
    """``(None, 'batch', 3)`` -> ``[?, batch, 3]``."""
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _dynamic(d: Dim) -> bool:
    return not isinstance(d, int)


def check_graph(cfg: mc.ModelConfig, graph: Graph, where: Where, artifact: str) -> list[ConfigError]:
    """Every difference between ``cfg``'s tensors and ``graph``, located by ``where``."""
    errors: list[ConfigError] = []
    by_name = {t.name: t for t in graph.inputs}
    for j, t in enumerate(cfg.input):
        errors.extend(_check_tensor("input", j, t, by_name, cfg.max_batch_size, where, artifact))
    listed = {t.name for t in cfg.input}
    for g in graph.inputs:
        if g.name not in listed:
            shape = format_dims(g.dims) if g.dims is not None else "unknown shape"
            errors.append(
                where.error(
                    "input",
                    f"the ONNX graph in {artifact} has input {g.name!r} ({g.dtype} {shape}) that the config does "
                    "not list: Triton would refuse to load the model",
                )
            )
    out_by_name = {t.name: t for t in graph.outputs}
    for j, t in enumerate(cfg.output):
        errors.extend(_check_tensor("output", j, t, out_by_name, cfg.max_batch_size, where, artifact))
    return errors


def _check_tensor(
    kind: str,
    index: int,
    t: mc.ModelInput | mc.ModelOutput,
    graph: dict[str, GraphTensor],
    mbs: int,
    where: Where,
    artifact: str,
) -> list[ConfigError]:
    g = graph.get(t.name)
    if g is None:
        known = ", ".join(sorted(graph)) or "none"
        return [
            where.error(
                kind,
                f"{kind} {t.name!r} is not an {kind} of the ONNX graph in {artifact} (graph {kind}s: {known})",
                index,
                t.name,
            )
        ]
    errors: list[ConfigError] = []
    dtype = dtype_name(t.data_type)
    if dtype != g.dtype:
        errors.append(
            where.error(
                f"{kind}.data_type",
                f"{kind} {t.name!r}: {where.says} dtype {dtype}, the ONNX graph has {g.dtype}",
                index,
                t.name,
            )
        )
    if g.dims is None:
        return errors  # the graph records no shape: nothing to compare
    problem = dims_problem(list(t.dims), g.dims, mbs)
    if problem:
        errors.append(
            where.error(f"{kind}.dims", f"{kind} {t.name!r}: {where.says} {problem}", index, t.name)
        )
    return errors


def dims_problem(declared: list[int], graph: tuple[Dim, ...], mbs: int) -> str | None:
    """Why ``declared`` dims (without batch) do not fit ``graph`` dims (with batch if mbs > 0), or None."""
    shown = f"dims {declared}"
    if mbs > 0:
        shown += " after the batch dimension"
    if mbs > 0:
        if not graph or not _dynamic(graph[0]):
            return (
                f"{shown}, the ONNX graph has {format_dims(graph)}: with a maximum batch size of {mbs} the "
                "graph's first dimension must be dynamic (the batch); set maxBatchSize: 0 if the model has "
                "no batch dimension"
            )
        rest = graph[1:]
    else:
        rest = graph
    if len(rest) != len(declared):
        hint = ""
        if mbs == 0 and len(graph) == len(declared) + 1 and graph and _dynamic(graph[0]):
            hint = " (is maxBatchSize missing? the graph's first dimension looks like a batch)"
        rank = f"rank {len(declared) + 1} with the batch" if mbs > 0 else f"rank {len(declared)}"
        return f"{shown} ({rank}), the ONNX graph has {format_dims(graph)} (rank {len(graph)}){hint}"
    offset = 1 if mbs > 0 else 0
    for k, (want, got) in enumerate(zip(declared, rest, strict=True)):
        if want == -1 and not _dynamic(got):
            return (
                f"{shown}, the ONNX graph has {format_dims(graph)}: dimension {k + offset} is dynamic (-1) in "
                f"the config but fixed to {got} in the graph"
            )
        if want != -1 and isinstance(got, int) and want != got:
            return (
                f"{shown}, the ONNX graph has {format_dims(graph)}: dimension {k + offset} is {want} in "
                f"the config but {got} in the graph"
            )
    return None
