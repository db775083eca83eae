"""Safe YAML loading that remembers where every value came from.

Configuration files arrive in pull requests from many people, so the loader treats them as
untrusted: only plain YAML data (mappings, sequences, strings, numbers, booleans, null) is
accepted, at most one document per file, no duplicate keys, no merge keys, a bounded number
of nodes after alias expansion (no "billion laughs"), and only UTF-8 text of bounded size.

Every value's position is recorded, so later stages can say ``file:line:col`` for any JSON path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipelines.config.errors import ConfigError, ConfigErrors, JsonPath, Location, format_path

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

_CoreLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


class _Loader(_CoreLoader):  # type: ignore[misc]
    """The C (or pure-Python) safe loader, with YAML 1.2-style floats such as ``1e-4`` (YAML 1.1 reads them as strings)."""


_Loader.add_implicit_resolver(
    f"{_STD}float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_scalars = SafeConstructor()


@dataclass(frozen=True)
class Document:
    """One parsed file: plain data plus the location of every value and mapping key."""

    path: Path
    display: str
    data: dict[str, Any]
    values: Mapping[JsonPath, Location] = field(repr=False)
    keys: Mapping[JsonPath, Location] = field(repr=False)
    raw: Mapping[JsonPath, str] = field(repr=False, default_factory=dict)  # source text of non-string scalars

    def locate(self, path: JsonPath, *, key: bool = False) -> Location:
        """Where ``path`` is written; falls back to the nearest enclosing value that exists."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            loc = self.values.get(path[:end])
            if loc is not None:
                return loc
        return Location(self.display, 1, 1)

    def error(self, path: JsonPath, message: str, *, key: bool = False) -> ConfigError:
        return ConfigError(self.locate(path, key=key), format_path(path), message)


class _Builder:
    """Turns a composed node tree into plain data, checking tags, keys and size as it goes."""

    def __init__(self, display: str):
        self.display = display
        self.values: dict[JsonPath, Location] = {}
        self.keys: dict[JsonPath, Location] = {}
        self.raw: dict[JsonPath, str] = {}
        self.errors: list[ConfigError] = []
        self.count = 0
        self.active: set[int] = set()

    def loc(self, node: Node) -> Location:
        return Location(self.display, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: Node, path: JsonPath, message: str) -> None:
        self.errors.append(ConfigError(self.loc(node), format_path(path), message))

    def build(self, node: Node, path: JsonPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(node)
        if len(path) > MAX_DEPTH:
            raise _TooDeep(node)
        self.values.setdefault(path, self.loc(node))
        if node.tag not in _ALLOWED_TAGS:
            self.fail(
                node,
                path,
                f"YAML tag {node.tag!r} is not allowed: only plain data (mappings, lists, strings, numbers, booleans, null)",
            )
            return None
        if id(node) in self.active:
            self.fail(node, path, "recursive YAML alias: a value may not contain itself")
            return None
        if isinstance(node, ScalarNode):
            if node.tag != f"{_STD}str":
                self.raw[path] = node.value
            return self.scalar(node)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag.removeprefix(_STD)
        if tag == "timestamp":  # dates stay text: no field of ours is a date, and strings compare exactly
            return node.value
        if tag == "str":
            return node.value
        return getattr(_scalars, f"construct_yaml_{tag}")(node)

    def mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_STD}merge":
                self.fail(key_node, path, "YAML merge keys ('<<') are not supported: write the keys out")
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, path, "mapping keys must be plain strings, not lists or mappings")
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in first_seen:
                self.fail(
                    key_node, child, f"duplicate key {key!r} (first defined at line {first_seen[key].line})"
                )
                continue
            first_seen[key] = self.loc(key_node)
            self.keys[child] = self.loc(key_node)
            out[key] = self.build(value_node, child)
        return out


class _TooBig(Exception):
    def __init__(self, node: Node):
        self.node = node


class _TooDeep(_TooBig):
    pass


def load_text(text: str, display: str, path: Path | None = None) -> Document:
    """Parse YAML text; raises ConfigErrors with every problem found."""
    loader = _Loader(text)
    try:
        nodes: list[Node] = []
        while loader.check_node():
            nodes.append(loader.get_node())
            if len(nodes) > 1:
                raise ConfigErrors(
                    [
                        ConfigError(
                            _loc(display, nodes[1]),
                            "(top level)",
                            "more than one YAML document ('---'): put each deployment or site in its own file",
                        )
                    ]
                )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigErrors(
            [ConfigError(Location(display, line, col), "(top level)", f"invalid YAML: {problem}")]
        ) from None
    except yaml.YAMLError as exc:  # reader errors: control characters and the like
        raise ConfigErrors(
            [ConfigError(Location(display, 1, 1), "(top level)", f"invalid YAML: {exc}")]
        ) from None
    finally:
        loader.dispose()
    if not nodes:
        raise ConfigErrors(
            [
                ConfigError(
                    Location(display, 1, 1), "(top level)", "the file is empty: expected a mapping of fields"
                )
            ]
        )
    root = nodes[0]
    builder = _Builder(display)
    try:
        data = builder.build(root, ())
    except _TooDeep as exc:
        raise ConfigErrors(
            [ConfigError(builder.loc(exc.node), "(top level)", f"nested deeper than {MAX_DEPTH} levels")]
        ) from None
    except _TooBig as exc:
        raise ConfigErrors(
            [
                ConfigError(
                    builder.loc(exc.node),
                    "(top level)",
                    f"more than {MAX_NODES} values after expanding aliases: refusing to expand further",
                )
            ]
        ) from None
    if builder.errors:
        raise ConfigErrors(builder.errors)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({data!r})"
        raise ConfigErrors(
            [ConfigError(builder.loc(root), "(top level)", f"expected a mapping of fields, found {kind}")]
        )
    return Document(path or Path(display), display, data, builder.values, builder.keys, builder.raw)


def _loc(display: str, node: Node) -> Location:
    return Location(display, node.start_mark.line + 1, node.start_mark.column + 1)


def load_file(path: Path, display: str | None = None) -> Document:
    """Read and parse one configuration file safely (size, encoding and YAML checks)."""
    display = display or str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigErrors(
            [ConfigError(Location(display), "(top level)", f"cannot read file: {exc.strerror or exc}")]
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigErrors(
            [
                ConfigError(
                    Location(display),
                    "(top level)",
                    f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB: configuration files are small; is this the right file?",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigErrors(
            [
                ConfigError(
                    Location(display, line, col),
                    "(top level)",
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x}): save the file as UTF-8",
                )
            ]
        ) from None
    return load_text(text.removeprefix("\ufeff"), display, path)
