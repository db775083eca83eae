"""Which ONNX Runtime each Triton release ships, and the newest ONNX IR version and opsets it reads.

A model exported with a newer opset (or IR version) than the ONNX Runtime in the deployment's
Triton image loads nowhere: Triton marks it UNAVAILABLE after the sync. ``sonic validate``
compares each ONNX artifact's header with this table (``pipelines.config.modelfiles``).

Two hand-kept tables, and one maintained by the ``onnx`` package:

* :data:`TRITON_ONNXRUNTIME`: Triton container release (``YY.MM`` of
  ``nvcr.io/nvidia/tritonserver:YY.MM-*``) -> the ONNX Runtime version its ONNX Runtime backend
  is built with. Sources: the ``TRITON_VERSION_MAP`` / ``DEFAULT_TRITON_VERSION_MAP`` ("ORT
  version") in ``build.py`` of the triton-inference-server/server release, and the release's
  entry in NVIDIA's Frameworks Support Matrix
  (https://docs.nvidia.com/deeplearning/frameworks/support-matrix/index.html) and release notes
  (https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-YY-MM.html).
* :data:`ONNXRUNTIME_ONNX`: ONNX Runtime minor version -> the ONNX release it implements. Source:
  the version matrix of https://onnxruntime.ai/docs/reference/compatibility.html.
* the ONNX release -> its IR version and ``ai.onnx`` / ``ai.onnx.ml`` opsets:
  ``onnx.helper.VERSION_TABLE`` (from onnx's docs/Versioning.md), not copied here.

An image not in the table (another registry, a custom image, a release not listed yet) is a
warning naming this module: add the release here, with its source, when a deployment uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

TABLE = "pipelines/config/modelconfig/onnxruntime_versions.py"

# Triton release -> ONNX Runtime version (see the module docstring for the sources).
TRITON_ONNXRUNTIME: dict[str, str] = {
    "23.12": "1.16.3",
    "24.01": "1.16.3",
    "24.02": "1.17.0",
    "24.03": "1.17.2",
    "24.04": "1.17.3",
    "24.05": "1.18.0",
    "24.06": "1.18.0",
    "24.07": "1.18.1",
    "24.08": "1.18.1",
    "24.09": "1.19.2",
    "24.10": "1.19.2",
    "24.11": "1.20.1",
    "24.12": "1.20.1",
    "25.01": "1.20.1",
    "25.02": "1.20.1",
    "25.03": "1.20.1",
}

# ONNX Runtime minor version -> the ONNX release it implements (onnxruntime.ai compatibility page).
ONNXRUNTIME_ONNX: dict[str, str] = {
    "1.16": "1.14.1",
    "1.17": "1.15.0",
    "1.18": "1.16.0",
    "1.19": "1.16.0",
    "1.20": "1.16.0",
}

# The images whose tag names a Triton release: NGC's tritonserver, any variant (-py3, -py3-min, ...).
_IMAGE = re.compile(
    r"^nvcr\.io/nvidia/tritonserver:(?P<release>[0-9]{2}\.[0-9]{2})-[-a-z0-9.]+(@sha256:[a-f0-9]{64})?$"
)
ML_DOMAIN = "ai.onnx.ml"


@dataclass(frozen=True)
class Runtime:
    """What one Triton image's ONNX Runtime reads."""

    triton: str
    onnxruntime: str
    max_ir_version: int
    max_opsets: dict[str, int]  # "" (ai.onnx) and "ai.onnx.ml"


@cache
def runtime_of(image: str) -> Runtime | None:
    """The ONNX Runtime that ``image`` ships, or None when the table does not know the image."""
    import onnx.helper

    m = _IMAGE.match(image)
    if m is None or m["release"] not in TRITON_ONNXRUNTIME:
        return None
    ort = TRITON_ONNXRUNTIME[m["release"]]
    onnx_release = ONNXRUNTIME_ONNX.get(".".join(ort.split(".")[:2]))
    row = next((r for r in onnx.helper.VERSION_TABLE if r[0] == onnx_release), None)
    if row is None:
        return None
    _, ir, opset, ml_opset = row[:4]
    return Runtime(m["release"], ort, int(ir), {"": int(opset), ML_DOMAIN: int(ml_opset)})
