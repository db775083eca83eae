""".github/CODEOWNERS: generated from the ownership rules, and asking GitHub for the same owners (issue 11, finding 2)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pipelines.config import load_tree
from pipelines.config.ownership import INFRASTRUCTURE_PATHS, Owner, handles, is_generated, source_owner
from pipelines.config.repository import load_repository
from pipelines.render.codeowners import render_codeowners
from tests.conftest import FIXTURE, ROOT
from tests.render.support import tree

# The only pattern forms the file uses; GitHub's CODEOWNERS syntax (gitignore rules, without
# "!", "[ ]" or "\#"): "*" matches every file, "/dir/" everything below that directory of the
# root, "/file" that file. The last matching line decides.
_FORMS = re.compile(r"^(\*|/[^*?\[\]!\s]+/|/[^*?\[\]!\s]+)$")


def owners_of(codeowners: str, path: str) -> tuple[str, ...]:
    found: tuple[str, ...] = ()
    for line in codeowners.splitlines():
        if not line or line.startswith("#"):
            continue
        pattern, *who = line.split()
        assert _FORMS.match(pattern), pattern
        if pattern == "*" or (pattern.endswith("/") and path.startswith(pattern[1:])) or path == pattern[1:]:
            found = tuple(who)
    return found


def _codeowners() -> str:
    return render_codeowners(tree(), load_repository(FIXTURE).platform_team)


def _live_codeowners() -> str:
    return render_codeowners(load_tree(ROOT), load_repository(ROOT).platform_team)


# The next two are about the live repository (its committed file and its `git ls-files`); the
# others read the fixture tree.


def test_the_committed_file_is_the_rendered_one() -> None:
    assert (ROOT / ".github" / "CODEOWNERS").read_text() == _live_codeowners()


def test_every_file_of_the_repository_asks_its_owner() -> None:
    text = _live_codeowners()
    of = handles(load_tree(ROOT), load_repository(ROOT).platform_team)
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [p for p in files.splitlines() if p] + [".github/CODEOWNERS"]
    assert len(paths) > 100
    for path in paths:
        who = owners_of(text, path)
        if not is_generated(path):
            assert who == of(source_owner(path)), path
        elif path.startswith("gitops/rendered/") and len(path.split("/")) >= 5:
            site, exp = path.split("/")[2:4]
            assert who == (*of(Owner("experiment", exp)), *of(Owner("site", site))), path
        else:
            assert who == of(Owner("platform")), path


def test_infrastructure_belongs_to_the_platform_team_alone() -> None:
    text = _codeowners()
    team = load_repository(FIXTURE).platform_team
    for path in INFRASTRUCTURE_PATHS:
        probe = path + "x" if path.endswith("/") else path
        assert owners_of(text, probe) == (team,), path
    assert owners_of(text, "gitops/argocd/geddes/appproject.yaml") == (team,)
    assert owners_of(text, "experiments/cms/particlenet.yaml") == ("@cms-sw/sonic-conveners", "@kpedro88")
    assert owners_of(text, "gitops/sites/geddes.yaml") == ("@purdue-af/sonic-admins",)


def test_a_site_without_admins_is_the_platform_teams(tmp_path: Path) -> None:
    t = tree()
    site = t.sites["geddes"].model_copy(update={"admins": ()})
    bare = type(t)(t.root, {**t.sites, "geddes": site}, t.experiments, t.deployments, t.documents)
    text = render_codeowners(bare, "@org/platform")
    assert owners_of(text, "gitops/sites/geddes.yaml") == ("@org/platform",)
    assert owners_of(text, "gitops/rendered/geddes/cms/particlenet/deployment.yaml") == (
        "@cms-sw/sonic-conveners",
        "@kpedro88",
        "@org/platform",
    )
