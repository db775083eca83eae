"""docs/architecture.md shows the layers exactly as the import-linter contract enforces them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def contract() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["id"] == "layers")


def block(marker: str, text: str) -> list[str]:
    """The lines of the fenced block right after the ``<!-- marker: ... -->`` comment."""
    m = re.search(rf"^<!-- {marker}:[^\n]*-->\n```\n(?P<body>.*?)^```$", text, re.M | re.S)
    assert m is not None, f"docs/architecture.md: no block after <!-- {marker}: ... -->"
    return m.group("body").splitlines()


def test_the_documented_layers_are_the_contract() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert block("layers", text) == contract()["layers"]
    assert block("ignored", text) == contract().get("ignore_imports", [])


def test_the_comparison_sees_a_reordered_layer() -> None:
    """The check above can fail: two swapped layers in the document are noticed."""
    layers = contract()["layers"]
    text = DOC.read_text(encoding="utf-8")
    swapped = text.replace(layers[-2] + "\n" + layers[-1], layers[-1] + "\n" + layers[-2])
    assert block("layers", swapped) != layers
