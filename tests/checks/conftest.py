"""A real local stack (Triton replicas, rendered Envoy, rendered Prometheus) and deployment variants.

Variants are private copies of the fixture tree with ``experiments/cms/minimal.yaml`` edited, so
a variant keeps the deployment's name (its metric labels match the running stack) while
declaring something different: an extra model, auth, a tiny admission threshold.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import Tree, load_tree
from pipelines.config.model import Placement
from pipelines.local import stack
from pipelines.local.prometheus import prometheus_binary
from pipelines.local.state import StackState

START_TIMEOUT = 90.0


def copy_tree(dest: Path, source: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """experiments/ and gitops/sites/ copied to ``dest``; ``edit`` changes minimal.yaml's data."""
    shutil.copytree(source / "experiments", dest / "experiments", ignore=shutil.ignore_patterns("locks"))
    shutil.copytree(source / "gitops" / "sites", dest / "gitops" / "sites")
    if edit is not None:
        path = dest / "experiments" / "cms" / "minimal.yaml"
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def minimal_of(root: Path) -> tuple[Tree, Placement]:
    tree = load_tree(root)
    return tree, tree.deployment("cms/minimal").placements[0]


@pytest.fixture(scope="module")
def variant(
    tmp_path_factory: pytest.TempPathFactory, fixture_root: Path
) -> Callable[..., tuple[Tree, Placement]]:
    """``variant(edit)``: the minimal deployment as declared by an edited copy of the tree."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None) -> tuple[Tree, Placement]:
        return minimal_of(copy_tree(tmp_path_factory.mktemp("variant"), fixture_root, edit))

    return make


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, fixture_root: Path
) -> Iterator[tuple[Tree, Placement, StackState]]:
    """The minimal deployment running with 3 Triton replicas, Envoy and (if installed) Prometheus."""
    root = copy_tree(tmp_path_factory.mktemp("live"), fixture_root)
    tree, p = minimal_of(root)
    with stack.running(tree, p, root=root, replicas=3, timeout=START_TIMEOUT) as state:
        yield tree, p, state


needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None, reason="Prometheus is not installed (apt-get install prometheus)"
)
