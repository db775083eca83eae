"""The generated configuration reference: complete, well-formed Markdown, and current."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.config.schema import inlined
from pipelines.config.schemadoc import render_reference

TEXT = render_reference()


def _field_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every field of a schema, in the reference's notation (independent of schemadoc.py's walk)."""
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path
        yield from _field_paths(sub, f"{path}.")
        items = sub.get("items")
        if isinstance(items, dict):
            yield from _field_paths(items, f"{path}[].")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict):
            yield from _field_paths(extra, f"{path}.<")


@pytest.mark.parametrize("name", ["experiment", "site", "deployment"])
def test_every_field_has_a_row(name: str) -> None:
    rows = re.findall(r"^\| `([^`]+)` \|", TEXT, flags=re.MULTILINE)
    missing = []
    for path in _field_paths(inlined(name)):
        # "<" marks a map key; the reference names it (<site>, <gpu-class>): compare the shape.
        pattern = re.escape(path).replace("<", "<[a-z-]+>\\.")
        if not any(re.fullmatch(pattern, r) for r in rows):
            missing.append(path)
    assert not missing


def test_rows_carry_type_default_allowed_values_and_description() -> None:
    assert (
        "| `envoy.retries.attempts` | integer | `2` | ≥ 0; ≤ 10 | Retries per request (0 turns retries off). |"
        in TEXT
    )
    assert "| `name` | [name](#name) | *required* |" in TEXT
    assert "| `triton.server.exitTimeout` | [duration](#duration) | `30s` |" in TEXT
    assert "`LEAST_REQUEST`" in TEXT and "| `envoy.lbPolicy` | string | `LEAST_REQUEST` |" in TEXT
    assert "| `sites.<site>.autoscaling.max` | integer |  | ≥ 1; ≤ 1000 |" in TEXT
    assert "exactly one of `storageClass`, `hostPath`" in TEXT
    assert '<a id="duration"></a>duration' in TEXT


def test_tables_are_well_formed() -> None:
    for line in TEXT.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells) in (5, 7), line  # 3 or 5 columns between the outer pipes


def test_rendering_is_deterministic() -> None:
    assert render_reference() == TEXT


def test_committed_reference_is_current(repo_root: Path) -> None:
    committed = (repo_root / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert committed == TEXT, "docs/config-reference.md is stale: run `sonic schema-docs` and commit it"
