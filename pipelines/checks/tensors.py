"""Request tensors for a model: seeded synthetic inputs shaped as declared, or reference files.

Shapes: the declared dims, with ``-1`` replaced from ``checks.models[].shapes``; a batch
dimension of ``checks.models[].batchSize`` in front when the model batches (maxBatchSize > 0).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as triton

from pipelines.config.model import Model, ModelCheck, Placement, Reference

Array = npt.NDArray[np.generic]

# Triton datatype -> numpy dtype. BF16 travels as float32 in tritonclient; STRING as bytes objects.
NUMPY_DTYPES: Mapping[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.float32,
    "STRING": np.object_,
}
SEED = 20261129


class TensorError(ValueError):
    """Inputs cannot be built from what the deployment declares (names the model and field)."""


@dataclass(frozen=True)
class ModelPlan:
    """What the checks send to one model: its declaration and its probe settings."""

    model: Model
    batch_size: int
    shapes: Mapping[str, tuple[int, ...]]
    reference: Reference | None

    @property
    def name(self) -> str:
        return self.model.name

    def request_shape(self, dims: tuple[int, ...]) -> tuple[int, ...]:
        return (self.batch_size, *dims) if self.model.max_batch_size > 0 else dims


def plans(p: Placement) -> tuple[ModelPlan, ...]:
    """One plan per declared model, probe settings taken from ``checks.models`` where given."""
    probes: dict[str, ModelCheck] = {c.name: c for c in p.checks.models}
    out = []
    for m in p.models:
        c = probes.get(m.name)
        out.append(
            ModelPlan(
                model=m,
                batch_size=c.batch_size if c else 1,
                shapes=dict(c.shapes or {}) if c else {},
                reference=c.reference if c else None,
            )
        )
    return tuple(out)


def synthetic_inputs(plan: ModelPlan, seed: int = SEED) -> dict[str, Array]:
    """Deterministic inputs for every non-optional declared input (same seed, same bytes)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, Array] = {}
    for t in plan.model.inputs:
        if t.optional:
            continue
        dims = plan.shapes.get(t.name, t.dims)
        if len(dims) != len(t.dims):
            raise TensorError(
                f"model {plan.name}: checks.models[].shapes.{t.name} has {len(dims)} dims, "
                f"the input declares {len(t.dims)} ({list(t.dims)})"
            )
        if any(d < 1 for d in dims):
            raise TensorError(
                f"model {plan.name}: input {t.name} has dynamic dims {list(t.dims)}: declare concrete "
                f"sizes in checks.models[].shapes.{t.name}"
            )
        shape = plan.request_shape(tuple(dims))
        arrays[t.name] = _random(rng, t.dtype, shape)
    return arrays


def _random(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> Array:
    np_type = NUMPY_DTYPES[dtype]
    if dtype == "STRING":
        flat = np.array([f"sonic-{i}".encode() for i in range(int(np.prod(shape)))], dtype=np.object_)
        return flat.reshape(shape)
    if dtype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(np_type, np.integer):
        # Small non-negative values: valid as indices or categories for most integer inputs.
        return rng.integers(0, 8, size=shape).astype(np_type)
    return rng.standard_normal(shape).astype(np_type)


def load_npz(path: Path) -> dict[str, Array]:
    """Arrays of an .npz file; raises TensorError naming the file when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except FileNotFoundError:
        raise TensorError(f"{path}: reference file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TensorError(f"{path}: not a readable .npz file ({exc})") from None


def reference_path(p: Placement, relative: str) -> Path:
    """Reference files are named relative to the deployment file."""
    return p.source.parent / relative


def infer_inputs(plan: ModelPlan, arrays: Mapping[str, Array]) -> list[triton.InferInput]:
    """tritonclient inputs with the declared datatypes; raises TensorError on a missing input."""
    out = []
    for t in plan.model.inputs:
        if t.name not in arrays:
            if t.optional:
                continue
            raise TensorError(f"model {plan.name}: no data for input {t.name!r}")
        arr = np.ascontiguousarray(arrays[t.name]).astype(NUMPY_DTYPES[t.dtype], copy=False)
        tensor = triton.InferInput(t.name, list(arr.shape), t.dtype)
        tensor.set_data_from_numpy(arr)
        out.append(tensor)
    return out


def requested_outputs(plan: ModelPlan) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(t.name) for t in plan.model.outputs]
