"""Shared fixtures: the repository root and a scratch copy of the example tree."""

from __future__ import annotations

import os
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
