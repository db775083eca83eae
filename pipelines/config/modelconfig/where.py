"""Locating a model setting for error messages: in the deployment YAML, or in a ``config.pbtxt``.

The checks compare a Triton ``ModelConfig`` with other facts (the ONNX graph, a site, a
declaration). The config may have been generated from the deployment file or supplied as a
``config.pbtxt``; a :class:`Where` turns a config field into the place a person must edit.

Field vocabulary (``field`` argument): ``name``, ``platform``, ``max_batch_size``, ``versions``,
``dynamic_batching``, ``preferred_batch_size`` (index = position), ``instances``, ``input`` /
``output`` (index = tensor position; with ``.dims`` / ``.data_type`` suffixes), ``artifact``,
``filename``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipelines.config.errors import ConfigError, JsonPath, Location, format_path
from pipelines.config.loader import Document
from pipelines.config.modelconfig.pbtxt import find_line

_YAML_FIELDS: dict[str, JsonPath] = {
    "name": ("name",),
    "platform": ("platform",),
    "max_batch_size": ("maxBatchSize",),
    "versions": ("versions",),
    "dynamic_batching": ("dynamicBatching",),
    "preferred_batch_size": ("dynamicBatching", "preferredBatchSize"),
    "instances": ("instances", "kind"),
    "input": ("inputs",),
    "output": ("outputs",),
    "artifact": ("artifact", "source"),
    "filename": ("artifact", "filename"),
    "config_file": ("configFile",),
}
_TENSOR_ATTRS = {"dims": "dims", "data_type": "dtype", "name": "name"}

_PBTXT_NEEDLES: dict[str, tuple[str, ...]] = {
    "name": ("name:",),
    "platform": ("platform:", "backend:"),
    "max_batch_size": ("max_batch_size",),
    "versions": ("version_policy",),
    "dynamic_batching": ("dynamic_batching",),
    "preferred_batch_size": ("preferred_batch_size",),
    "instances": ("kind:", "instance_group"),
    "filename": ("default_model_filename",),
}


class Where(Protocol):
    """Where a model's configuration is written, for located messages."""

    @property
    def model(self) -> str:
        """The model's name."""
        ...

    @property
    def says(self) -> str:
        """How messages name the configuration's side of a comparison ("declared", "config.pbtxt has")."""
        ...

    def error(
        self, field: str, message: str, index: int | None = None, tensor: str | None = None
    ) -> ConfigError:
        """A located error about ``field`` (see the module docstring), prefixed with the model name."""
        ...


@dataclass(frozen=True)
class InDeployment:
    """A model declared in a deployment file (``models[index]``), located with the parsed document."""

    doc: Document | None
    display: str
    index: int
    model: str
    says: str = "declared"

    def path(self, field: str, index: int | None = None) -> JsonPath:
        base, _, attr = field.partition(".")
        head: JsonPath = ("models", self.index, *_YAML_FIELDS[base])
        if index is None:
            return head
        return (*head, index, _TENSOR_ATTRS[attr]) if attr else (*head, index)

    def error(
        self, field: str, message: str, index: int | None = None, tensor: str | None = None
    ) -> ConfigError:
        path = self.path(field, index)
        loc = self.doc.locate(path) if self.doc is not None else Location(self.display)
        return ConfigError(loc, format_path(path), f"model {self.model!r}: {message}")


@dataclass(frozen=True)
class InConfigFile:
    """A model whose ``config.pbtxt`` is a file (supplied, or found in an in-place repository)."""

    display: str
    text: str = field(repr=False)
    model: str
    says: str = "config.pbtxt has"

    def error(
        self, field: str, message: str, index: int | None = None, tensor: str | None = None
    ) -> ConfigError:
        base, _, attr = field.partition(".")
        if base in ("input", "output") and tensor is not None:
            line = find_line(self.text, f'"{tensor}"')
        else:
            line = find_line(self.text, *_PBTXT_NEEDLES.get(base, ()))
        path = base if index is None else f"{base}[{index}]"
        path += f".{attr}" if attr else ""
        return ConfigError(
            Location(self.display, line, 1 if line else 0), path, f"model {self.model!r}: {message}"
        )
