"""The check spec: everything ``sonic check`` needs about one deployment, without the repository.

The PostSync hook Job runs the pipeline image, which holds the package but not the
configuration tree (``experiments/``, ``gitops/sites/``). So the renderer ships, per deployment,
the resolved :class:`~pipelines.config.model.Placement` (per-site overrides merged,
defaults applied) as canonical JSON, plus the reference ``.npz`` files of
``checks.models[].reference``, in a ConfigMap beside the Job, which runs
``sonic check --spec <mount>/deployment.json``.

The file::

    {"specVersion": 1, "deployment": {<Placement, camelCase keys as in the schemas>}}

Reference paths in the spec are relative to the spec file, as they are relative to the
deployment file in the repository. A :func:`bundle` renames them to flat file names
(``reference-<n>-<file name>``), because ConfigMap keys cannot contain ``/``.

Example::

    spec_file = write(p, Path("/tmp/spec"))  # /tmp/spec/deployment.json, /tmp/spec/reference-0-*.npz
    q = load_spec(spec_file)  # equal to p, but for source (= spec_file) and the reference paths
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.config.errors import display_path
from pipelines.config.model import Placement

SPEC_VERSION = 1
SPEC_FILE = "deployment.json"
REFERENCE_PREFIX = "reference-"
_UNSAFE_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")  # what a ConfigMap key may not contain
_MAX_NAME = 200  # of the file-name part of a key; keys may be 253 characters


class SpecError(Exception):
    """A check spec that cannot be written or read; the message names the file (and the field)."""


@dataclass(frozen=True)
class Bundle:
    """A deployment's check spec as files: ``deployment.json`` and the reference files it names."""

    spec: str
    references: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes of every key and value (what Kubernetes counts against a ConfigMap's 1 MiB, and then some)."""
        total = len(SPEC_FILE) + len(self.spec.encode("utf-8"))
        return total + sum(len(k) + len(v) for k, v in self.references.items())

    def files(self) -> dict[str, bytes]:
        """File name -> content, ``deployment.json`` first, then the references by name."""
        return {SPEC_FILE: self.spec.encode("utf-8"), **dict(sorted(self.references.items()))}


def to_spec(p: Placement, references: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The spec of ``p`` as a JSON-ready dict; ``references`` renames reference paths (old -> new)."""
    deployment = p.model_dump(mode="json", by_alias=True)
    if references:
        for check in deployment["checks"]["models"]:
            ref = check.get("reference")
            if ref is not None:
                ref["inputs"] = references.get(ref["inputs"], ref["inputs"])
                ref["outputs"] = references.get(ref["outputs"], ref["outputs"])
    return {"specVersion": SPEC_VERSION, "deployment": deployment}


def dumps(spec: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, two-space indent, a final newline (byte-identical for equal specs)."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def reference_names(p: Placement) -> dict[str, str]:
    """Each reference path of ``p`` (as declared) -> its flat file name, in declaration order.

    The same path declared twice gets one name; the number keeps names unique when two paths
    share a file name (``a/x.npz``, ``b/x.npz``).
    """
    names: dict[str, str] = {}
    for check in p.checks.models:
        if check.reference is None:
            continue
        for declared in (check.reference.inputs, check.reference.outputs):
            if declared not in names:
                base = _UNSAFE_KEY_CHARS.sub("_", PurePosixPath(declared).name)[-_MAX_NAME:]
                names[declared] = f"{REFERENCE_PREFIX}{len(names)}-{base}"
    return names


def read_references(p: Placement) -> dict[str, bytes]:
    """The reference files of ``p`` (declared path -> content), read from next to the deployment file.

    The one read a :func:`bundle` needs, done by the caller (renderers read no files).

    Raises:
        SpecError: a reference file cannot be read.
    """
    references: dict[str, bytes] = {}
    for declared in reference_names(p):
        path = p.source.parent / declared
        try:
            references[declared] = path.read_bytes()
        except OSError as exc:
            raise SpecError(
                f"{display_path(path)}: reference file of checks.models[].reference cannot be read "
                f"({exc.strerror or exc})"
            ) from None
    return references


def bundle(p: Placement, references: Mapping[str, bytes]) -> Bundle:
    """The spec of ``p`` with its reference files (``references``: declared path -> content, as
    :func:`read_references` returns them).

    Raises:
        KeyError: a reference file of ``p`` is not in ``references`` (the caller did not read it).
    """
    names = reference_names(p)
    return Bundle(dumps(to_spec(p, names)), {name: references[declared] for declared, name in names.items()})


def write(p: Placement, directory: Path) -> Path:
    """Write the :func:`bundle` of ``p`` into ``directory`` (created if missing); returns the spec file."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in bundle(p, read_references(p)).files().items():
        (directory / name).write_bytes(data)
    return directory / SPEC_FILE


def load_spec(path: Path) -> Placement:
    """The deployment a spec file describes, with ``source`` = ``path`` (references resolve next to it).

    Raises:
        SpecError: unreadable, not JSON, another spec version, or not a valid deployment; the
            message names the file and each offending field.
    """
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(f"{shown}: cannot read the check spec ({reason})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{shown}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or "deployment" not in doc:
        raise SpecError(f"{shown}: not a check spec (an object with specVersion and deployment)")
    version = doc.get("specVersion")
    if version != SPEC_VERSION:
        raise SpecError(
            f"{shown}: specVersion: {version!r} is not supported by this sonic (it reads "
            f"{SPEC_VERSION}): the pipeline image and the renderer that wrote the spec differ"
        )
    deployment = doc["deployment"]
    if not isinstance(deployment, dict):
        raise SpecError(f"{shown}: deployment: expected an object")
    try:
        return Placement.model_validate({**deployment, "source": path})
    except ValidationError as exc:
        problems = [
            f"{shown}: deployment.{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
        raise SpecError("\n".join(problems)) from None


RENDERED_CONFIGMAPS = "configmap.yaml"  # where a rendered deployment directory keeps its ConfigMaps


def extract_rendered(directory: Path, into: Path) -> Path:
    """Write the check spec of a rendered deployment directory into ``into``; returns the spec file.

    ``directory`` is a ``gitops/rendered/<site>/<experiment>/<deployment>`` directory, as on the
    GitOps branch: its ``configmap.yaml`` holds the check spec ConfigMap (the one whose data has
    ``deployment.json``), so a check of what the branch deployed needs nothing else.

    Raises:
        SpecError: no such directory or file, not YAML, no check spec ConfigMap, or a bad value.
    """
    source = directory / RENDERED_CONFIGMAPS
    shown = display_path(source)
    if not source.is_file():
        raise SpecError(
            f"{shown}: not found: {display_path(directory)} is not a rendered deployment directory "
            "(on the GitOps branch: the deployment was never rolled out at this site, or was removed)"
        )
    try:
        docs = [d for d in yaml.safe_load_all(source.read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{shown}: cannot read the rendered ConfigMaps ({exc})") from None
    found = [d for d in docs if d.get("kind") == "ConfigMap" and SPEC_FILE in (d.get("data") or {})]
    if len(found) != 1:
        raise SpecError(
            f"{shown}: expected one ConfigMap with data.{SPEC_FILE} (the check spec), found {len(found)}"
        )
    configmap = found[0]
    into.mkdir(parents=True, exist_ok=True)
    (into / SPEC_FILE).write_text(str(configmap["data"][SPEC_FILE]), encoding="utf-8")
    for name, encoded in (configmap.get("binaryData") or {}).items():
        if _UNSAFE_KEY_CHARS.search(str(name)) or str(name) in (".", ".."):
            raise SpecError(f"{shown}: binaryData key {name!r} is not a file name")
        try:
            (into / str(name)).write_bytes(base64.b64decode(str(encoded), validate=True))
        except binascii.Error as exc:
            raise SpecError(f"{shown}: binaryData.{name}: not base64 ({exc})") from None
    return into / SPEC_FILE


__all__ = [
    "REFERENCE_PREFIX",
    "SPEC_FILE",
    "SPEC_VERSION",
    "Bundle",
    "SpecError",
    "bundle",
    "dumps",
    "extract_rendered",
    "load_spec",
    "read_references",
    "reference_names",
    "to_spec",
    "write",
]
