"""Located configuration errors: every problem names the file, line, column and field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

PathElem = str | int
JsonPath = tuple[PathElem, ...]


class Location(NamedTuple):
    """A place in a file; line and column are 1-based (0 when unknown).

    A NamedTuple rather than a frozen dataclass: the loader records one per YAML node, and
    tuple construction is several times cheaper (immutable and ordered all the same).
    """

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


def format_path(path: Sequence[PathElem]) -> str:
    """``("models", 0, "inputs")`` -> ``models[0].inputs``; the empty path is ``(top level)``."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else elem
    return out or "(top level)"


@dataclass(frozen=True, order=True)
class ConfigError:
    """One problem in one configuration file."""

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.path}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "file": loc.file,
            "line": loc.line,
            "column": loc.col,
            "path": self.path,
            "message": self.message,
        }


class ConfigErrors(Exception):
    """Raised with every problem found, sorted by file and line, so users fix them all in one go."""

    def __init__(self, errors: Iterable[ConfigError]):
        self.errors: list[ConfigError] = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))


def display_path(path: Path) -> str:
    """Paths relative to the working directory when possible: shorter, and clickable in editors."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
