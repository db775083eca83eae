"""Shared fixtures: the repository root and a scratch copy of the example tree."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def example_tree(tmp_path: Path) -> Iterator[Path]:
    """A private copy of experiments/ and gitops/sites/ that a test may break."""
    dest = tmp_path / "repo"
    shutil.copytree(ROOT / "experiments", dest / "experiments")
    shutil.copytree(ROOT / "gitops" / "sites", dest / "gitops" / "sites")
    yield dest
