"""The ``--local`` variant: a repository the Triton server bundled in nvidia-pytriton can serve on CPU.

That server has only the Python backend. Each ONNX model is therefore wrapped: its version
directory holds the verified ``.onnx`` file plus ``model.py`` (the package's template
``templates/onnx_model.py``, copied verbatim), and its ``config.pbtxt`` is the checked config
with the backend switched to ``python``, instances on CPU, and a parameter naming the ONNX file.
Name, tensors, versions and batching stay exactly as built for the cluster.

Python-backend models are served as they are (on CPU); other platforms (TensorRT, TorchScript,
SavedModel) cannot run here and are skipped with a reason.

The variant is published as its own snapshot, ``<dest>/local/snapshots/<digest>/``, where the
digest hashes the list of files with their sha256, so it too is content-addressed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.modelconfig.pbtxt import to_text
from pipelines.modelrepo.layout import RepoModel
from pipelines.modelrepo.snapshot import Entry

VARIANT = "local/python-onnxruntime/v1"  # change when the layout or template contract changes
ONNX_PARAMETER = "onnx_file"
TEMPLATE = "onnx_model.py"


def local_store(dest: Path) -> Path:
    """The snapshot store of the local variant inside ``dest``."""
    return dest / "local"


def template_bytes() -> bytes:
    """The ``model.py`` that wraps an ONNX model (shipped as package data)."""
    return (resources.files("pipelines.modelrepo") / "templates" / TEMPLATE).read_bytes()


def local_config(cfg: mc.ModelConfig, onnx_file: str) -> mc.ModelConfig:
    """``cfg`` for the Python backend on CPU, running ``onnx_file`` through the template."""
    out = mc.ModelConfig()
    out.CopyFrom(cfg)
    out.ClearField("platform")
    out.backend = "python"
    for name in ("optimization", "default_model_filename", "cc_model_filenames", "model_warmup"):
        out.ClearField(name)
    for group in out.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
        group.ClearField("gpus")
    out.parameters[ONNX_PARAMETER].string_value = onnx_file
    return out


def _cpu_only(cfg: mc.ModelConfig) -> mc.ModelConfig:
    out = mc.ModelConfig()
    out.CopyFrom(cfg)
    for group in out.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
        group.ClearField("gpus")
    return out


@dataclass(frozen=True)
class LocalPlan:
    digest: str
    entries: tuple[Entry, ...]
    served: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (model, why)


def plan(models: Sequence[RepoModel]) -> LocalPlan:
    """The local variant's files and digest for ``models``."""
    template = template_bytes()
    entries: list[Entry] = []
    manifest: list[tuple[str, str, int]] = []
    served: list[str] = []
    skipped: list[tuple[str, str]] = []

    def add_data(relpath: str, data: bytes) -> None:
        entries.append(Entry(relpath, len(data), data=data))
        manifest.append((relpath, hashlib.sha256(data).hexdigest(), len(data)))

    for m in sorted(models, key=lambda m: m.name):
        if m.platform == "onnxruntime_onnx":
            add_data(f"{m.name}/config.pbtxt", to_text(local_config(m.config, m.filename)).encode("utf-8"))
            for v in sorted(m.versions):
                add_data(f"{m.name}/{v}/model.py", template)
                entries.append(
                    Entry(f"{m.name}/{v}/{m.filename}", m.size, source=m.artifact, sha256=m.sha256)
                )
                manifest.append((f"{m.name}/{v}/{m.filename}", m.sha256, m.size))
        elif m.platform == "python":
            add_data(f"{m.name}/config.pbtxt", to_text(_cpu_only(m.config)).encode("utf-8"))
            for v in sorted(m.versions):
                entries.append(
                    Entry(f"{m.name}/{v}/{m.filename}", m.size, source=m.artifact, sha256=m.sha256)
                )
                manifest.append((f"{m.name}/{v}/{m.filename}", m.sha256, m.size))
        else:
            skipped.append(
                (m.name, f"platform {m.platform} cannot run on the bundled CPU Triton (Python backend only)")
            )
            continue
        served.append(m.name)
    body = json.dumps({"variant": VARIANT, "files": sorted(manifest)}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return LocalPlan(digest, tuple(entries), tuple(served), tuple(skipped))
