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

import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import onnx
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigError
from pipelines.config.modelconfig.pbtxt import dtype_name
from pipelines.config.modelconfig.where import Where

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
_P = TypeVar("_P", bound=Any)


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


@dataclass(frozen=True)
class Header:
    """What runtimes check before anything else: the IR version and the operator sets imported."""

    ir_version: int
    opsets: dict[str, int]  # domain ("" for the default ai.onnx) -> version


# Field numbers of onnx.proto (ModelProto, GraphProto, TensorProto, SparseTensorProto,
# OperatorSetIdProto): only what the interface and the header need is looked at.
_MODEL_IR_VERSION, _MODEL_GRAPH, _MODEL_OPSET_IMPORT = 1, 7, 8
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE_INITIALIZER = 5, 11, 12, 15
_TENSOR_NAME, _SPARSE_VALUES = 8, 1
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Wire:
    """A read-only walk over protobuf wire format in a memory-mapped file.

    Only the fields asked for are copied out of the map; everything else (the weights, the
    nodes) is skipped by its length and never read, so the pages holding it are never touched
    and do not count against the process's memory.
    """

    def __init__(self, buf: mmap.mmap | bytes):
        self.buf = buf

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise OnnxError("not a valid ONNX model: truncated or malformed protobuf (varint)")
            byte = self.buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(field number, wire type, start, end) of each field in ``buf[start:end]``; varints as (value, -1)."""
        pos = start
        while pos < end:
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise OnnxError("not a valid ONNX model: field number 0 (not protobuf)")
            if wire == _VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value, -1
                continue
            if wire == _LEN:
                length, pos = self.varint(pos, end)
                stop = pos + length
            elif wire == _I64:
                stop = pos + 8
            elif wire == _I32:
                stop = pos + 4
            else:
                raise OnnxError(f"not a valid ONNX model: unsupported protobuf wire type {wire}")
            if stop > end:
                raise OnnxError("not a valid ONNX model: truncated (a field runs past the end of the file)")
            yield number, wire, pos, stop
            pos = stop

    def first(self, start: int, end: int, number: int) -> tuple[int, int] | None:
        return next(((s, e) for n, w, s, e in self.fields(start, end) if n == number and w == _LEN), None)


def _parse(cls: type[_P], data: bytes) -> _P:
    try:
        parsed: _P = cls.FromString(data)
        return parsed
    except Exception as exc:  # protobuf's DecodeError
        raise OnnxError(f"not a valid ONNX model: {exc}") from None


def _scan(buf: mmap.mmap | bytes) -> tuple[Header, Graph]:
    wire = _Wire(buf)
    ir_version = 0
    opsets: dict[str, int] = {}
    graph_at: tuple[int, int] | None = None
    for number, kind, start, end in wire.fields(0, len(buf)):
        if number == _MODEL_IR_VERSION and kind == _VARINT:
            ir_version = start
        elif number == _MODEL_OPSET_IMPORT and kind == _LEN:
            op = _parse(onnx.OperatorSetIdProto, bytes(buf[start:end]))
            opsets[op.domain if op.domain != "ai.onnx" else ""] = int(op.version)
        elif number == _MODEL_GRAPH and kind == _LEN:
            graph_at = (start, end)
    if graph_at is None or ir_version == 0:
        raise OnnxError("not a valid ONNX model: no graph or no IR version")
    inputs: list[onnx.ValueInfoProto] = []
    outputs: list[onnx.ValueInfoProto] = []
    initialized: set[str] = set()
    for number, kind, start, end in wire.fields(*graph_at):
        if kind != _LEN:
            continue
        if number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
            vi = _parse(onnx.ValueInfoProto, bytes(buf[start:end]))
            (inputs if number == _GRAPH_INPUT else outputs).append(vi)
        elif number == _GRAPH_INITIALIZER:
            initialized.add(_tensor_name(wire, start, end))
        elif number == _GRAPH_SPARSE_INITIALIZER:
            values = wire.first(start, end, _SPARSE_VALUES)
            if values is not None:
                initialized.add(_tensor_name(wire, *values))
    header = Header(ir_version, opsets)
    graph = Graph(
        inputs=tuple(_tensor(vi) for vi in inputs if vi.name not in initialized),
        outputs=tuple(_tensor(vi) for vi in outputs),
    )
    for vi in (*inputs, *outputs):
        try:
            onnx.checker.check_value_info(vi, onnx.checker.DEFAULT_CONTEXT)
        except Exception as exc:  # onnx.checker.ValidationError
            raise OnnxError(f"not a valid ONNX model: {str(exc).strip().splitlines()[0]}") from None
    return header, graph


def _tensor_name(wire: _Wire, start: int, end: int) -> str:
    at = wire.first(start, end, _TENSOR_NAME)
    return bytes(wire.buf[at[0] : at[1]]).decode("utf-8", "replace") if at else ""


def read_onnx(path: Path) -> tuple[Header, Graph]:
    """The header and interface of the ONNX model at ``path``, without loading its weights or nodes.

    The file is memory-mapped and walked at the protobuf wire level (see :class:`_Wire`): peak
    memory is the interface, not the model (``bench/onnx_memory_bench.py``). Checked: the
    protobuf structure of everything walked, an IR version and a graph, and each input and
    output (``onnx.checker.check_value_info``). Not checked here: the nodes, which Triton's
    ONNX Runtime checks when it loads the model. Raises OnnxError with a readable reason.
    """
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise OnnxError("not a valid ONNX model: the file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _scan(buf)
    except OSError as exc:
        raise OnnxError(f"cannot read the model: {exc.strerror or exc}") from None


def read_graph(path: Path) -> Graph:
    """The interface of the ONNX model at ``path`` (see :func:`read_onnx`); raises OnnxError."""
    return read_onnx(path)[1]


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
