"""The key table (``keys.yaml``): what becomes of each key of a SuperSONIC values file.

The table is data, so that what the importer does with each key is read in one place, apart
from the code that converts the values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

KEYS_FILE = Path(__file__).with_name("keys.yaml")

Key = tuple[str, ...]
Status = Literal["mapped", "changed", "unrepresentable", "unused", "unknown"]

# One path segment: a plain name, or a bracketed quoted name that may contain dots.
_SEGMENT = re.compile(r'\["(?P<quoted>[^"]+)"\]|(?P<plain>[^.\[\]]+)')


def parse_key(text: str) -> Key:
    """``grafana["grafana.ini"].server`` -> ``("grafana", "grafana.ini", "server")``."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
        m = _SEGMENT.match(text, pos)
        if m is None:
            raise ValueError(f"bad key path {text!r} at {pos}")
        out.append(m.group("quoted") or m.group("plain"))
        pos = m.end()
    return tuple(out)


def format_key(key: Key) -> str:
    """The inverse of :func:`parse_key` (segments with dots or slashes in brackets)."""
    out = ""
    for seg in key:
        if re.fullmatch(r"[A-Za-z0-9_-]+|\*", seg):
            out += f".{seg}" if out else seg
        else:
            out += f'["{seg}"]'
    return out


@dataclass(frozen=True)
class Entry:
    """One table entry: where a key goes (``target``), and why ours differs or cannot hold it."""

    key: Key
    status: Status
    target: str
    why: str


@dataclass(frozen=True)
class Table:
    entries: dict[Key, Entry]
    flags: dict[str, Entry]

    def match(self, path: Key) -> Entry | None:
        """The entry covering ``path``: exact, or ``*`` at the last level, or an enclosing key."""
        for end in range(len(path), 0, -1):
            head = path[:end]
            for candidate in (head, (*head[:-1], "*")):
                entry = self.entries.get(candidate)
                if entry is not None:
                    return entry
        return None

    def stops_at(self, path: Key) -> bool:
        """A table entry names exactly this path: the report does not descend below it."""
        return path in self.entries or (*path[:-1], "*") in self.entries

    def flag(self, name: str) -> Entry | None:
        return self.flags.get(name)


def _entry(key: Key, spec: Any) -> Entry:
    if not isinstance(spec, dict):
        raise ValueError(f"{format_key(key)}: entry must be a mapping")
    if "none" in spec:
        return Entry(key, "unrepresentable", "", str(spec["none"]))
    if "changed" in spec:
        return Entry(key, "changed", str(spec["to"]), str(spec["changed"]))
    return Entry(key, "mapped", str(spec["to"]), "")


@cache
def table() -> Table:
    data = yaml.safe_load(KEYS_FILE.read_text(encoding="utf-8"))
    entries: dict[Key, Entry] = {}
    for text, spec in data["keys"].items():
        key = parse_key(text)
        entries[key] = _entry(key, spec)
    flags = {name: _entry(("triton", "args", name), spec) for name, spec in data["flags"].items()}
    return Table(entries, flags)
