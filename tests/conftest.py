"""Shared fixtures: the repository root, the frozen fixture tree and scratch copies of it.

Unit and golden tests read ``FIXTURE`` (tests/fixtures/tree, see its README), never the live
``experiments/`` and ``gitops/`` that pull requests change; only tests *about* the live tree
(every example validates, ``sonic render --check`` of the repository, the docs) read ``ROOT``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# A complete repository frozen for the tests: configuration, locks, check data, and its golden
# render (gitops/rendered, gitops/argocd, gitops/workflows, .github/CODEOWNERS).
FIXTURE = ROOT / "tests" / "fixtures" / "tree"


def copy_fixture(dest: Path, *parts: str) -> Path:
    """Copy the fixture tree (only ``parts``, repository-relative, when given) to ``dest``; returns ``dest``."""
    for part in parts or [p.name for p in FIXTURE.iterdir()]:
        source = FIXTURE / part
        if source.is_dir():
            shutil.copytree(source, dest / part)
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / part)
    return dest


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository itself: code, docs, and the live examples (for tests about those)."""
    return ROOT


@pytest.fixture(scope="session")
def fixture_root() -> Path:
    """The frozen fixture tree, read-only (copy it with ``example_tree`` or ``copy_fixture`` to edit)."""
    return FIXTURE


@pytest.fixture
def example_tree(tmp_path: Path) -> Iterator[Path]:
    """A private copy of the fixture tree's experiments/ and gitops/sites/ that a test may break."""
    yield copy_fixture(tmp_path / "repo", "experiments", "gitops/sites")


# In CI every prerequisite is installed by .ci/run (Prometheus, promtool, Envoy, Triton, git) and
# ../shared/crds lies beside the clone, so a skipped test there means a broken set-up, not a
# test that may be left out: report it as a failure. Only tests marked `kind` may skip (CI has
# no Docker image pulls); their reason is printed in the summary.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if os.environ.get("CI") and report.skipped and item.get_closest_marker("kind") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every prerequisite must be present: {reason}"
    return report
