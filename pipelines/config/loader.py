"""Safe YAML loading that remembers where every value came from.

Configuration files arrive in pull requests from many people, so the loader treats them as
untrusted: only plain YAML data (mappings, sequences, strings, numbers, booleans, null) is
accepted, at most one document per file, no duplicate keys, no merge keys, a bounded number
of nodes after alias expansion (no "billion laughs"), and only UTF-8 text of bounded size.

Every value's position is recorded, so later stages can say ``file:line:col`` for any JSON path.
"""

from __future__ import annotations

import math
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
# Allowed tags by node kind: a tag on the wrong kind of node (``!!map foo``) is refused too.
_SCALAR_TAGS = frozenset(f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp"))
_SEQ_TAG = f"{_STD}seq"
_MAP_TAG = f"{_STD}map"
_PLAIN_DATA = "only plain data (mappings, lists, strings, numbers, booleans, null)"


class _Loader(_CoreLoader):  # type: ignore[misc]
    """The C (or pure-Python) safe loader, with YAML 1.2-style floats such as ``1e-4`` (YAML 1.1 reads them as strings)."""


# Exponent floats without a dot; a tool that writes these files should quote strings matching it.
YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver(f"{_STD}float", YAML12_FLOAT, list("-+0123456789"))

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
        if path not in self.values:  # an alias expanded twice keeps its first location
            self.values[path] = self.loc(node)
        if not _tag_fits(node):
            self.fail(node, path, f"YAML tag {_short_tag(node.tag)!r} is not allowed here: {_PLAIN_DATA}")
            return None
        if id(node) in self.active:
            self.fail(node, path, "recursive YAML alias: a value may not contain itself")
            return None
        if isinstance(node, ScalarNode):
            if node.tag != f"{_STD}str":
                self.raw[path] = node.value
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        tag = node.tag.removeprefix(_STD)
        if tag in (
            "str",
            "timestamp",
        ):  # dates stay text: no field of ours is a date, and strings compare exactly
            return node.value
        try:
            value = getattr(_scalars, f"construct_yaml_{tag}")(node)
        except (ValueError, KeyError, IndexError, OverflowError):
            # PyYAML's resolver accepts a few texts its constructor cannot convert ("0b_", a
            # 5,000-digit integer, "!!bool maybe"): the user's mistake, not ours.
            self.fail(
                node, path, f"{node.value[:40]!r} is not a valid {tag}: write it in quotes if it is text"
            )
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, path, f"{node.value[:40]!r} is not a finite number (JSON has no NaN or infinity)")
            return None
        return value

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
            if not _tag_fits(key_node):
                self.fail(
                    key_node,
                    path,
                    f"YAML tag {_short_tag(key_node.tag)!r} is not allowed on a key: {_PLAIN_DATA}",
                )
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in first_seen:
                self.fail(
                    key_node, child, f"duplicate key {key!r} (first defined at line {first_seen[key].line})"
                )
                continue
            first_seen[key] = self.keys[child] = self.loc(key_node)
            out[key] = self.build(value_node, child)
        return out


def _tag_fits(node: Node) -> bool:
    if isinstance(node, ScalarNode):
        return node.tag in _SCALAR_TAGS
    return node.tag == (_SEQ_TAG if isinstance(node, SequenceNode) else _MAP_TAG)


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:binary`` -> ``!!binary``: the way people write it."""
    return "!!" + tag.removeprefix(_STD) if tag.startswith(_STD) else tag


class _TooBig(Exception):
    def __init__(self, node: Node):
        self.node = node


class _TooDeep(_TooBig):
    pass


def load_text(text: str, display: str, path: Path | None = None) -> Document:
    """Parse YAML text; raises ConfigErrors with every problem found."""
    nodes: list[Node] = []
    loader: Any = None
    try:
        loader = _Loader(text)
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
        if _char_at(text, line, col) == "\t":
            problem += " (a tab: YAML indents with spaces only)"
        raise ConfigErrors(
            [ConfigError(Location(display, line, col), "(top level)", f"invalid YAML: {problem}")]
        ) from None
    except yaml.reader.ReaderError as exc:  # control characters and the like, by character offset
        before = text[: exc.position]
        char = exc.character if isinstance(exc.character, int) else ord(exc.character or "\0")
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        raise ConfigErrors(
            [
                ConfigError(
                    Location(display, line, col),
                    "(top level)",
                    f"invalid YAML: character U+{char:04X} is not allowed ({exc.reason})",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigErrors(
            [ConfigError(Location(display, 1, 1), "(top level)", f"invalid YAML: {_first_line(exc)}")]
        ) from None
    except (
        UnicodeEncodeError
    ) as exc:  # lone surrogates in a str given to load_text (files are decoded strictly)
        raise ConfigErrors(
            [ConfigError(Location(display, 1, 1), "(top level)", f"not valid Unicode text: {exc.reason}")]
        ) from None
    except RecursionError:  # only the pure-Python parser recurses; libyaml stops at 1,000 levels itself
        raise ConfigErrors(
            [ConfigError(Location(display, 1, 1), "(top level)", f"nested deeper than {MAX_DEPTH} levels")]
        ) from None
    finally:
        if loader is not None:
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


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n")
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


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
            [ConfigError(Location(display, 1, 1), "(top level)", f"cannot read file: {exc.strerror or exc}")]
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigErrors(
            [
                ConfigError(
                    Location(display, 1, 1),
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
