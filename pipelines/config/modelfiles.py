"""Pull-request-time checks of the files a deployment names: ``configFile`` and reference ``.npz`` files.

Until now a supplied ``config.pbtxt`` was first parsed by ``sonic build-models`` and a reference
file first opened by ``sonic check`` after the sync. Both are in the pull request, so
``sonic validate`` reads them here and reports, located at the deployment's field that names the
file (the message names the file itself, and a line in it where that helps):

* ``configFile``: Triton's own parser (protobuf), the model name, batching, the instance kind
  against every site the deployment runs at (GPU instances without a GPU), and the declared
  platform, batch size, tensors and versions against the file;
* ``checks.models[].reference``: every array's name, dtype and shape against the model's tensors
  (declared, or from its ``configFile``), with the batch dimension first when the model batches
  (it must be the check's ``batchSize``), and no missing or unexpected arrays.

Reading is bounded: files must lie inside the experiment's folder (the ``_local_file`` rule
reports the others, and nothing is read then), be regular files no larger than
:data:`MAX_CONFIG_BYTES` / :data:`MAX_REFERENCE_BYTES`, and ``.npz`` members are never
decompressed: only each array's header is read, and the sizes the archive declares are
checked against the header (so a zip bomb costs nothing here), with ``allow_pickle`` semantics
(object arrays are refused).
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.config.errors import ConfigError, JsonPath
from pipelines.config.loader import Document
from pipelines.config.model import Model, Placement, Site, Tensor

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

    from pipelines.config.tree import Tree

MAX_CONFIG_BYTES = 1024 * 1024  # a config.pbtxt is a few KiB; Triton's own models stay far below
# Reference files travel in the check spec ConfigMap (1 MiB in all, pipelines.config.checkspec), and
# the check pod loads the arrays into memory: bound both the file and what it unpacks to.
MAX_REFERENCE_BYTES = 1024 * 1024
MAX_REFERENCE_UNPACKED = 256 * 1024 * 1024
MAX_REFERENCE_ARRAYS = 256
_MAX_NPY_HEADER = 10_000  # numpy's own default limit for an .npy header
# The public header readers of the .npy formats numpy.savez writes (3.0 only for non-Latin-1 field names).
_HEADER_READERS: dict[tuple[int, int], Any] = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
_read_magic: Any = np.lib.format.read_magic

# Triton dtype -> the numpy dtype a reference array must have (as pipelines.checks.tensors sends it).
_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "float32",  # tritonclient carries BF16 as float32
}


class FileProblem(Exception):
    """A named file cannot be read safely or is not what it should be (the message says why)."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing more than ``limit``; never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise FileProblem(f"cannot be opened ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("is not a regular file")
        if info.st_size > limit:
            raise FileProblem(f"is {info.st_size} bytes, more than the {limit} bytes allowed")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileProblem(f"is more than the {limit} bytes allowed")
    return data


# --- reference .npz files --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayHeader:
    """What an ``.npy`` member declares: enough to check names, dtypes and shapes without the data."""

    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]


def npz_headers(data: bytes) -> list[ArrayHeader]:
    """The arrays of an ``.npz`` file, from their headers only; FileProblem when it is not a safe one."""
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FileProblem(f"is not an .npz file (numpy.savez): {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_REFERENCE_ARRAYS:
            raise FileProblem(f"holds {len(members)} entries, more than the {MAX_REFERENCE_ARRAYS} allowed")
        unpacked = sum(m.file_size for m in members)
        if unpacked > MAX_REFERENCE_UNPACKED:
            raise FileProblem(
                f"unpacks to {unpacked} bytes, more than the {MAX_REFERENCE_UNPACKED} allowed "
                "(a check sends the arrays in one request)"
            )
        return [_npy_header(archive, m) for m in members]


def _npy_header(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> ArrayHeader:
    if member.is_dir() or not member.filename.endswith(".npy") or "/" in member.filename:
        raise FileProblem(
            f"entry {member.filename!r} is not an array (numpy.savez writes <name>.npy entries)"
        )
    name = member.filename.removesuffix(".npy")
    try:
        with archive.open(member) as f:
            version = _read_magic(f)
            read = _HEADER_READERS.get(version)
            if read is None:
                raise FileProblem(f"array {name!r}: .npy format {version} is not supported (use numpy.savez)")
            shape, fortran, dtype = read(f, max_header_size=_MAX_NPY_HEADER)
            offset = f.tell()
    except FileProblem:
        raise
    except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error) as exc:
        raise FileProblem(f"array {name!r} cannot be read: {exc}") from None
    del fortran  # the layout does not matter for a check
    if dtype.hasobject:
        raise FileProblem(
            f"array {name!r} holds Python objects, which would need pickle (refused); save strings "
            "as fixed-width bytes (numpy dtype 'S')"
        )
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if member.file_size != expected:
        raise FileProblem(
            f"array {name!r} declares {member.file_size} bytes, its header says {expected}: the file is damaged"
        )
    return ArrayHeader(name, dtype, tuple(int(d) for d in shape))


def _dtype_ok(want: str, got: np.dtype[np.generic]) -> bool:
    if want == "STRING":
        return got.kind in ("S", "U")
    return got == np.dtype(_NUMPY[want])


def _dtype_wanted(want: str) -> str:
    return "bytes or str (numpy dtype 'S' or 'U')" if want == "STRING" else f"numpy {_NUMPY[want]}"


def _shape_problem(got: tuple[int, ...], dims: Sequence[int], mbs: int, batch: int) -> str | None:
    """Why an array of shape ``got`` does not fit ``dims`` (without batch) of a model batching up to ``mbs``."""
    if mbs > 0:
        if len(got) == len(dims) and all(w in (-1, g) for w, g in zip(dims, got, strict=True)):
            return (
                f"shape {list(got)} has no batch dimension: the model batches (maxBatchSize {mbs}), so "
                f"the first dimension is the batch, {batch} (checks batchSize), then dims {list(dims)}"
            )
        if len(got) != len(dims) + 1:
            return f"shape {list(got)}: expected [{batch} (the batch, checks batchSize), *dims {list(dims)}]"
        if got[0] != batch:
            return (
                f"shape {list(got)}: the first dimension is the batch and must be the check's batchSize "
                f"{batch}" + (f" (at most maxBatchSize {mbs})" if batch > mbs else "")
            )
        rest = got[1:]
    else:
        if len(got) == len(dims) + 1 and all(w in (-1, g) for w, g in zip(dims, got[1:], strict=True)):
            return (
                f"shape {list(got)} has a batch dimension, but the model does not batch (maxBatchSize 0): "
                f"give the arrays exactly the dims {list(dims)}"
            )
        rest = got
    if len(rest) != len(dims) or any(w not in (-1, g) for w, g in zip(dims, rest, strict=True)):
        batch_note = " after the batch dimension" if mbs > 0 else " (no batch dimension: maxBatchSize 0)"
        return f"shape {list(got)} does not fit the dims {list(dims)}{batch_note}"
    return None


def reference_problems(
    headers: Sequence[ArrayHeader],
    tensors: Sequence[Tensor],
    kind: str,
    mbs: int,
    batch: int,
) -> Iterator[str]:
    """Every mismatch between a reference file's arrays and the model's ``kind`` ("input"/"output") tensors."""
    by_name = {t.name: t for t in tensors}
    seen = set()
    for h in headers:
        seen.add(h.name)
        t = by_name.get(h.name)
        if t is None:
            known = ", ".join(sorted(by_name)) or "none"
            yield f"array {h.name!r} is not an {kind} of the model ({kind}s: {known})"
            continue
        if not _dtype_ok(t.dtype, h.dtype):
            yield f"array {h.name!r} is {h.dtype}, the {kind} is {t.dtype}: save it as {_dtype_wanted(t.dtype)}"
        problem = _shape_problem(h.shape, t.dims, mbs, batch)
        if problem:
            yield f"array {h.name!r}: {problem}"
    for t in tensors:
        if t.name in seen or (kind == "input" and t.optional):
            continue
        why = "every input the model needs" if kind == "input" else "every declared output is compared"
        yield f"no array for {kind} {t.name!r} ({why})"


# --- supplied config.pbtxt -------------------------------------------------------------------------


@dataclass(frozen=True)
class InDeploymentField:
    """Locates errors about a supplied ``config.pbtxt`` at the deployment field naming it.

    The message names the file and, where it can be found, the line of the field in it.
    """

    doc: Document
    at: JsonPath
    display: str
    text: str
    model: str
    says: str = "config.pbtxt has"

    def error(
        self, field: str, message: str, index: int | None = None, tensor: str | None = None
    ) -> ConfigError:
        from pipelines.config.modelconfig.where import InConfigFile

        inner = InConfigFile(self.display, self.text, self.model).error(field, message, index, tensor)
        line = f":{inner.location.line}" if inner.location.line else ""
        return self.doc.error(self.at, f"{self.display}{line}: {inner.path}: {inner.message}")


def tensors_of(cfg: mc.ModelConfig) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """A config's inputs and outputs as typed tensors (for comparing reference files)."""
    from pipelines.config.modelconfig.pbtxt import dtype_name

    def typed(items: Sequence[mc.ModelInput] | Sequence[mc.ModelOutput], inputs: bool) -> tuple[Tensor, ...]:
        out = []
        for t in items:
            dtype = dtype_name(t.data_type)
            if dtype not in (*_NUMPY, "STRING"):
                continue  # TYPE_INVALID: the config's own check reports it
            optional = bool(inputs and getattr(t, "optional", False))
            out.append(Tensor(name=t.name, dtype=dtype, dims=tuple(t.dims), optional=optional))
        return tuple(out)

    return typed(cfg.input, True), typed(cfg.output, False)


def config_file_errors(
    doc: Document,
    index: int,
    model: Model,
    explicit: frozenset[str],
    display: str,
    text: str,
    placements: Sequence[Placement],
    sites: dict[str, Site],
) -> tuple[list[ConfigError], mc.ModelConfig | None]:
    """Every problem of the supplied config of ``models[index]``, and the parsed config (None if unparsable)."""
    from pipelines.config.errors import ConfigErrors
    from pipelines.config.modelconfig import pbtxt
    from pipelines.config.modelconfig.configcheck import check_config, compare_declared, placements_of
    from pipelines.config.modelconfig.where import InDeployment

    at: JsonPath = ("models", index, "configFile")
    try:
        cfg = pbtxt.parse(text, display)
    except ConfigErrors as exc:
        return [doc.error(at, f"{e.location}: {e.message}") for e in exc.errors], None
    where = InDeploymentField(doc, at, display, text, model.name)
    decl = InDeployment(doc, doc.display, index, model.name)
    strict = any(p.triton.server.strict_model_config for p in placements)
    errors = check_config(cfg, where, placements_of(placements, sites), strict=strict)
    errors.extend(compare_declared(model, explicit, cfg, decl, display))
    if cfg.version_policy.HasField("specific"):
        listed = sorted(cfg.version_policy.specific.versions)
        if listed != sorted(model.versions):
            errors.append(
                decl.error(
                    "versions",
                    f"declared versions {sorted(model.versions)} but {display} serves versions {listed}",
                )
            )
    return errors, cfg


# --- ONNX artifacts against the Triton image's ONNX Runtime ---------------------------------------


@dataclass(frozen=True)
class Findings:
    """Errors (a model the image cannot load) and warnings (an image the table does not know)."""

    errors: tuple[ConfigError, ...]
    warnings: tuple[ConfigError, ...]


def onnx_runtime_findings(tree: Tree) -> Findings:
    """Each local ONNX artifact's IR version and opsets against the ONNX Runtime of each image it runs in.

    Only artifacts in the pull request (paths inside the experiment) are read; https artifacts
    are checked by ``sonic build-models`` once fetched. Unreadable or invalid files are reported
    by the build, not here (their sha256 is checked first).
    """
    from pipelines.config.errors import display_path
    from pipelines.config.modelconfig.onnxcheck import OnnxError, read_onnx
    from pipelines.config.modelconfig.onnxruntime_versions import ML_DOMAIN, TABLE, runtime_of

    errors: list[ConfigError] = []
    warnings: list[ConfigError] = []
    for d in tree.deployments:
        if not d.placements:
            continue
        doc = tree.documents[d.source]
        folder = d.source.parent.resolve()
        for i, m in enumerate(d.placements[0].models):
            if m.artifact is None or m.platform != "onnxruntime_onnx" or "://" in m.artifact.source:
                continue
            target = (folder / m.artifact.source).resolve()
            if not target.is_relative_to(folder) or not target.is_file():
                continue  # the _local_file rule speaks
            try:
                header = read_onnx(target)[0]
            except OnnxError:
                continue  # the build reports it, after checking the sha256
            at: JsonPath = ("models", i, "artifact", "source")
            shown = display_path(target)
            seen: set[str] = set()
            for p in d.placements:
                image = p.triton.image
                if image in seen:
                    continue
                seen.add(image)
                rt = runtime_of(image)
                if rt is None:
                    warnings.append(
                        doc.error(
                            at,
                            f"cannot tell which ONNX Runtime the Triton image {image!r} (at site {p.site!r}) ships: "
                            f"it is not in the table of Triton releases ({TABLE}), so the IR version "
                            f"{header.ir_version} and opsets of {shown} are not checked against it",
                        )
                    )
                    continue
                too_new = [
                    f"{'ai.onnx' if domain == '' else domain} opset {version} (it reads up to {rt.max_opsets[domain]})"
                    for domain, version in sorted(header.opsets.items())
                    if domain in ("", ML_DOMAIN) and version > rt.max_opsets[domain]
                ]
                if header.ir_version > rt.max_ir_version:
                    too_new.insert(0, f"IR version {header.ir_version} (it reads up to {rt.max_ir_version})")
                if too_new:
                    errors.append(
                        doc.error(
                            at,
                            f"model {m.name!r}: {shown} needs a newer ONNX Runtime than the one in {image!r} "
                            f"(Triton {rt.triton}: ONNX Runtime {rt.onnxruntime}, at site {p.site!r}): "
                            f"{', '.join(too_new)}; export the model for an older opset/IR version "
                            "(e.g. torch.onnx.export(..., opset_version=N)) or use a newer Triton image",
                        )
                    )
    return Findings(tuple(errors), tuple(warnings))


__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_REFERENCE_ARRAYS",
    "MAX_REFERENCE_BYTES",
    "MAX_REFERENCE_UNPACKED",
    "ArrayHeader",
    "FileProblem",
    "Findings",
    "InDeploymentField",
    "config_file_errors",
    "npz_headers",
    "onnx_runtime_findings",
    "read_bounded",
    "reference_problems",
    "tensors_of",
]
