"""The guides' commands run as written: every fenced block after a ``<!-- tested -->`` line.

Each guide runs in its own scratch copy of the repository (experiments/, gitops/ and the
importer's values files), block after block, with ``bash -euo pipefail`` and the virtualenv's
``sonic`` first on PATH; a failing command fails the test with its output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ["docs/onboarding.md", "docs/migrating-from-supersonic.md"]
BLOCK = re.compile(r"^<!-- tested -->\n```(?:sh|console)\n(?P<body>.*?)^```$", re.M | re.S)


def blocks_of(guide: str) -> list[str]:
    return [m.group("body") for m in BLOCK.finditer((ROOT / guide).read_text(encoding="utf-8"))]


def scratch_repo(tmp_path: Path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(ROOT / "experiments", dest / "experiments")
    shutil.copytree(ROOT / "gitops", dest / "gitops")
    shutil.copytree(ROOT / "tests" / "importers" / "values", dest / "tests" / "importers" / "values")
    return dest


@pytest.mark.parametrize("guide", GUIDES)
def test_the_guide_has_tested_commands(guide: str) -> None:
    assert len(blocks_of(guide)) >= 2


@pytest.mark.parametrize("guide", GUIDES)
def test_the_guide_commands_run(guide: str, tmp_path: Path) -> None:
    repo = scratch_repo(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for i, body in enumerate(blocks_of(guide)):
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"block {i + 1} of {guide} failed:\n{body}\n{proc.stdout}\n{proc.stderr}"
