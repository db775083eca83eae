"""The frozen fixture tree (tests/fixtures/tree) is what the unit tests read, and it stands alone.

It must not lean on the live tree (no symbolic links out of it), it must be valid on its own, and
the scratch copies tests break (``example_tree``, where the hostile corpus is placed) are copies
of it, not of the live ``experiments/`` and ``gitops/sites/``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.config.support import SONIC
from tests.conftest import FIXTURE, ROOT


def _files(root: Path, *parts: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for part in parts
        for p in sorted((root / part).rglob("*"))
        if p.is_file()
    }


def test_the_fixture_tree_holds_real_files_only() -> None:
    assert (FIXTURE / "experiments").is_dir() and (FIXTURE / "gitops" / "sites").is_dir()
    links = [p for p in FIXTURE.rglob("*") if p.is_symlink()]
    assert links == [], "the fixture tree must not point into the live tree"
    assert not FIXTURE.resolve().is_relative_to((ROOT / "experiments").resolve())


def test_the_fixture_tree_validates_on_its_own() -> None:
    proc = subprocess.run(
        [*SONIC, "validate", "--format", "json"], cwd=FIXTURE, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"experiments/cms/minimal.yaml"' in proc.stdout


MARK = "A frozen copy for the tests, independent of the live gitops/sites/"


def test_example_tree_is_a_copy_of_the_fixture_tree(example_tree: Path) -> None:
    copied = _files(example_tree, "experiments", "gitops")
    assert copied == _files(FIXTURE, "experiments", "gitops/sites")
    assert example_tree.resolve() != FIXTURE.resolve()
    # The fixture's anvil.yaml ends with a mark the live one lacks: the copy is not of the live tree.
    assert MARK in (example_tree / "gitops" / "sites" / "anvil.yaml").read_text()
    assert MARK not in (ROOT / "gitops" / "sites" / "anvil.yaml").read_text()
