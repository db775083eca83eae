"""Golden files: every example deployment at every site, and each site's Argo CD objects.

The files under tests/golden/ are the reviewed output. They are rewritten only on request:

    SONIC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/render/test_golden.py

(never in CI). The comparison is on parsed objects; a mismatch shows a unified diff of the
canonical YAML of the objects that differ.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config.repository import DEFAULT
from pipelines.render.argocd import render_argocd_site
from pipelines.render.yamlout import dump, dump_all
from tests.render.support import ROOT, ident, placements, rendered, tree

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("SONIC_UPDATE_GOLDEN") == "1"


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def _compare(path: Path, objs: list[dict[str, Any]]) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            dump_all(objs, header="Golden file: SONIC_UPDATE_GOLDEN=1 pytest tests/render/test_golden.py")
        )
        return
    if not path.exists():
        pytest.fail(f"{_shown(path)} is missing: run with SONIC_UPDATE_GOLDEN=1 and review it")
    want = {_key(o): o for o in yaml.safe_load_all(path.read_text()) if o}
    got = {_key(o): o for o in objs}
    lines: list[str] = []
    for key in sorted(set(want) | set(got)):
        if want.get(key) != got.get(key):
            a = dump(want[key]).splitlines(keepends=True) if key in want else []
            b = dump(got[key]).splitlines(keepends=True) if key in got else []
            lines += difflib.unified_diff(a, b, f"golden {key[0]} {key[1]}", f"rendered {key[0]} {key[1]}")
    assert not lines, f"{_shown(path)} differs (SONIC_UPDATE_GOLDEN=1 to accept):\n" + "".join(lines)


@pytest.mark.parametrize("name", [ident(p) for p, _ in placements()])
def test_deployment_matches_golden(name: str) -> None:
    p = next(p for p, _ in placements() if ident(p) == name)
    _compare(GOLDEN / f"{name}.yaml", rendered(p))


@pytest.mark.parametrize("site", sorted(tree().sites))
def test_argocd_matches_golden(site: str) -> None:
    t = tree()
    objs = render_argocd_site(
        t.sites[site], dict(t.experiments), dict(t.sites), t.site_deployments(site), DEFAULT
    )
    _compare(GOLDEN / "argocd" / f"{site}.yaml", objs)


def test_no_stale_golden_files() -> None:
    expected = {f"{ident(p)}.yaml" for p, _ in placements()} | {f"argocd/{s}.yaml" for s in tree().sites}
    present = {path.relative_to(GOLDEN).as_posix() for path in GOLDEN.rglob("*.yaml")}
    assert present == expected, "remove golden files of deployments that no longer exist"


@pytest.mark.skipif(UPDATE, reason="regenerating")
def test_golden_comparison_can_fail(tmp_path: Path) -> None:
    p, _ = placements()[0]
    objs = rendered(p)
    path = tmp_path / "golden.yaml"
    path.write_text(dump_all(objs))
    objs[0]["metadata"]["name"] = "renamed"
    with pytest.raises(AssertionError, match="renamed"):
        _compare(path, objs)
