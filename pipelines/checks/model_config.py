"""Is the model the server runs the model the deployment declares?

Compares Triton's model metadata (what clients see) and model configuration (what the server
loaded) with the declaration: tensor names, datatypes, dims, optional flags, max batch size and
served versions. The platform is not compared: the local stack serves ONNX models through the
Python backend, and a site may serve the same interface from a TensorRT plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tritonclient.grpc import model_config_pb2

from pipelines.config.model import Model, Tensor


def metadata_datatype(dtype: str) -> str:
    """The datatype Triton's metadata reports for a declared dtype (STRING travels as BYTES)."""
    return "BYTES" if dtype == "STRING" else dtype


def config_datatype(dtype: str) -> str:
    return f"TYPE_{dtype}"


def differences(model: Model, metadata: Any, config: Any) -> list[str]:
    """Every field where the served model differs from ``model``, as ``field: served X, declared Y``.

    ``metadata`` is a ``ModelMetadataResponse`` and ``config`` a ``ModelConfig`` message.
    """
    diffs: list[str] = []
    if metadata.name != model.name:
        diffs.append(f"metadata.name: served {metadata.name!r}, declared {model.name!r}")
    served_versions = {int(v) for v in metadata.versions if str(v).isdigit()}
    missing = sorted(set(model.versions) - served_versions)
    if missing:
        diffs.append(f"versions: {missing} declared but not served (served {sorted(served_versions)})")
    if config.max_batch_size != model.max_batch_size:
        diffs.append(f"maxBatchSize: served {config.max_batch_size}, declared {model.max_batch_size}")
    batch = [-1] if model.max_batch_size > 0 else []
    for kind, declared, meta, conf in (
        ("inputs", model.inputs, metadata.inputs, config.input),
        ("outputs", model.outputs, metadata.outputs, config.output),
    ):
        diffs += _tensor_diffs(kind, declared, meta, conf, batch)
    return diffs


def _tensor_diffs(
    kind: str, declared: Sequence[Tensor], meta: Iterable[Any], conf: Iterable[Any], batch: list[int]
) -> list[str]:
    diffs: list[str] = []
    meta_by_name = {t.name: t for t in meta}
    conf_by_name = {t.name: t for t in conf}
    for t in declared:
        where = f"{kind}.{t.name}"
        m = meta_by_name.get(t.name)
        c = conf_by_name.get(t.name)
        if m is None or c is None:
            diffs.append(f"{where}: declared but not served")
            continue
        if m.datatype != metadata_datatype(t.dtype):
            diffs.append(f"{where}.dtype: served {m.datatype}, declared {t.dtype}")
        served_shape = list(m.shape)
        if served_shape != [*batch, *t.dims]:
            diffs.append(f"{where}.dims: served shape {served_shape}, declared {[*batch, *t.dims]}")
        served_type = model_config_pb2.DataType.Name(c.data_type)
        if served_type != config_datatype(t.dtype):
            diffs.append(f"{where}.dtype (config): served {served_type}, declared {config_datatype(t.dtype)}")
        if list(c.dims) != list(t.dims):
            diffs.append(f"{where}.dims (config): served {list(c.dims)}, declared {list(t.dims)}")
        if kind == "inputs" and bool(c.optional) != t.optional:
            diffs.append(f"{where}.optional: served {bool(c.optional)}, declared {t.optional}")
    names = {t.name for t in declared}
    for name in sorted(set(meta_by_name) - names):
        diffs.append(f"{kind}.{name}: served but not declared")
    return diffs
