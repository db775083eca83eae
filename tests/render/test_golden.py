"""Golden files: the frozen fixture tree's committed render is what the renderers produce today.

tests/fixtures/tree (see tests/fixtures/README.md) holds configuration and its render:
gitops/rendered, gitops/argocd and .github/CODEOWNERS (``sonic render``) and gitops/workflows
(``sonic pipelines render``). That render is the project's only golden copy, rewritten only on
request:

    SONIC_UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/render/test_golden.py

(never in CI). The comparison is byte for byte (rendering is deterministic) through the same
``--check`` commands that guard the live tree, so a mismatch shows their unified diff. The live
tree is not compared with anything here: ``sonic render --check`` on the repository guards it
(tests/render/test_cli_render.py, tests/workflows/test_render.py, CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipelines.cli import cli
from tests.conftest import FIXTURE, copy_fixture

UPDATE = os.environ.get("SONIC_UPDATE_GOLDEN") == "1"
# What renders each part of the golden tree.
COMMANDS = {"manifests": ("render",), "workflows": ("pipelines", "render")}


def _run(command: tuple[str, ...], root: Path, *options: str) -> Result:
    return CliRunner().invoke(cli, [*command, *options, "--root", str(root)], catch_exceptions=False)


@pytest.mark.parametrize("part", sorted(COMMANDS))
def test_fixture_tree_matches_its_golden_render(part: str) -> None:
    if UPDATE:
        result = _run(COMMANDS[part], FIXTURE)
        assert result.exit_code == 0, result.output
        return
    result = _run(COMMANDS[part], FIXTURE, "--check")
    assert result.exit_code == 0, (
        f"the golden render of tests/fixtures/tree differs (SONIC_UPDATE_GOLDEN=1 to accept, then review):\n"
        f"{result.output}"
    )


def test_golden_render_covers_every_fixture_deployment() -> None:
    from tests.render.support import placements, tree

    present = {
        p.parent.relative_to(FIXTURE).as_posix()
        for p in FIXTURE.glob("gitops/rendered/*/*/*/application.json")
    }
    wanted = {f"gitops/rendered/{p.site}/{p.experiment}/{p.name}" for p, _ in placements()}
    assert present == wanted and wanted
    assert {p.name for p in (FIXTURE / "gitops" / "argocd").iterdir()} == set(tree().sites)


@pytest.mark.skipif(UPDATE, reason="regenerating")
@pytest.mark.parametrize(
    ("part", "path", "before", "after"),
    [
        (
            "manifests",
            "gitops/rendered/nautilus/cms/particlenet/deployment.yaml",
            "replicas: 5",
            "replicas: 7",
        ),
        ("workflows", "gitops/workflows/rollout.yaml", "limit: 4", "limit: 40"),
    ],
)
def test_golden_comparison_can_fail(tmp_path: Path, part: str, path: str, before: str, after: str) -> None:
    root = copy_fixture(tmp_path / "repo")
    target = root / path
    assert before in target.read_text()
    target.write_text(target.read_text().replace(before, after, 1))
    result = _run(COMMANDS[part], root, "--check")
    assert result.exit_code == 1
    assert path in result.output and after in result.output
