"""One place for each name: repository paths (config/layout.py), deployment references, labels and
the pipelines' defaults (config/repository.py). The source scans below fail when a caller spells one out.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.config import layout, names, ownership, repository
from pipelines.config.model import Deployment, deployment_ref
from pipelines.config.tree import Tree, classify
from pipelines.modelrepo.lock import lock_path
from pipelines.workflows import settings
from tests.render import support

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"

# A repository path in a string: a gitops/ directory or file (not "sonic-gitops/..."), an
# experiment's folder, the namespaces' directory, a lock file, CODEOWNERS; or a bare path component.
LAYOUT_TEXT = re.compile(
    r"(?<![-\w])gitops/|(?<![-\w.])experiments/|_namespaces|repository\.lock\.json|\.github/CODEOWNERS"
)
LAYOUT_PARTS = {"gitops", "rendered", "locks", ".github"}
# ``experiment/name`` spelled out from two fields instead of ``.ref`` / ``deployment_ref``.
REF_TEXT = re.compile(r"\{[\w.]*experiment\}/\{[\w.]*\}")
LABEL_KEYS = re.compile(
    r"^(app\.kubernetes\.io/(part-of|managed-by|name|instance)|sonic\.fastml\.org/(experiment|site|deployment))$"
)
DEFAULTS = {
    names.PIPELINE_IMAGE,
    names.CHECK_CLIENT_SECRET,
    names.GITHUB_READ_TOKEN_SECRET,
}

LAYOUT_MODULE = "pipelines/config/layout.py"
NAMES_MODULE = "pipelines/config/names.py"
# The pipelines' defaults (image, UID, branch, Secrets): the repository settings' own module.
DEFAULTS_MODULE = "pipelines/config/repository.py"
# The only other places allowed to spell these, and why.
ALLOWED: dict[tuple[str, str], str] = {
    # The GitOps branch's default name, not a directory.
    (DEFAULTS_MODULE, "gitops"): "GITOPS_BRANCH",
}


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String constants (f-string parts included), except docstrings and other bare expressions."""
    bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare:
            yield node.lineno, node.value


def _fstrings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, ast.unparse(node)


def layout_literals(source: str) -> list[tuple[int, str]]:
    """Strings in ``source`` that spell a repository path the layout module owns."""
    return [
        (line, text)
        for line, text in _strings(ast.parse(source))
        if LAYOUT_TEXT.search(text) or text.rstrip("/") in LAYOUT_PARTS
    ]


def ref_spellings(source: str) -> list[tuple[int, str]]:
    """f-strings in ``source`` that join an experiment and a name with "/" themselves."""
    return [(line, text) for line, text in _fstrings(ast.parse(source)) if REF_TEXT.search(text)]


def label_literals(source: str) -> list[tuple[int, str]]:
    """Label keys and pipeline defaults spelled out in ``source`` instead of taken from ``names``."""
    return [
        (line, text)
        for line, text in _strings(ast.parse(source))
        if LABEL_KEYS.match(text) or text in DEFAULTS
    ]


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted(PIPELINES.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def _found(check: Callable[[str], list[tuple[int, str]]], owners: set[str]) -> list[str]:
    return [
        f"{rel}:{line}: {text!r}"
        for rel, source in _sources()
        if rel not in owners
        for line, text in check(source)
        if (rel, text) not in ALLOWED
    ]


# --- the checkers can fail -----------------------------------------------------------------------


def test_the_layout_check_finds_paths_spelled_out() -> None:
    source = '''
"""A docstring may name gitops/rendered."""
RENDERED = "gitops/rendered"
glob = f"gitops/sites/{site}.yaml"
parts = ("gitops", "sites")
lock = root / "locks" / "x"
status = "sonic-gitops/pr-validation"  # a commit status context, not a path
'''
    assert [line for line, _ in layout_literals(source)] == [3, 4, 5, 6]


def test_the_ref_check_finds_experiment_slash_name() -> None:
    source = (
        'a = f"{p.experiment}/{p.name}"\nb = f"{experiment}/{deployment} at"\nc = p.ref\nd = f"{x}/{y}"\n'
    )
    assert [line for line, _ in ref_spellings(source)] == [1, 2]


def test_the_label_check_finds_label_keys_and_defaults() -> None:
    source = (
        'a = {"app.kubernetes.io/managed-by": "sonic-gitops"}\n'
        'b = "sonic.fastml.org/site"\n'
        f'c = "{names.PIPELINE_IMAGE}"\n'
        'd = ("sonic.fastml.org/", "app.kubernetes.io/")\n'
    )
    assert sorted(line for line, _ in label_literals(source)) == [1, 2, 3]


# --- the tree obeys them -------------------------------------------------------------------------


def test_repository_paths_are_spelled_only_in_the_layout_module() -> None:
    assert _found(layout_literals, {LAYOUT_MODULE}) == []


def test_deployment_references_are_spelled_only_in_one_place() -> None:
    # model.deployment_ref; names.snapshot_dir and the layout's paths join the same two names.
    assert _found(ref_spellings, {"pipelines/config/model.py", NAMES_MODULE, LAYOUT_MODULE}) == []


def test_labels_and_pipeline_defaults_are_spelled_only_in_names() -> None:
    assert _found(label_literals, {NAMES_MODULE, DEFAULTS_MODULE}) == []


def test_allowlist_entries_are_still_needed() -> None:
    sources = dict(_sources())
    for rel, text in ALLOWED:
        assert any(t == text for _, t in _strings(ast.parse(sources[rel]))), (rel, text)


# --- what the one definitions say ---------------------------------------------------------------


def test_ownership_and_names_use_the_layout_module() -> None:
    for constant in ("RENDERED_DIR", "ARGOCD_DIR", "CODEOWNERS_FILE", "NAMESPACES_DIR"):
        assert getattr(names, constant) is getattr(layout, constant)
        assert getattr(ownership, constant) is getattr(layout, constant)
    assert repository.REPOSITORY_FILE.as_posix() == layout.REPOSITORY_FILE
    assert ownership.INFRASTRUCTURE_PATHS[2:6] == (
        "gitops/repository.yaml",
        "gitops/workflows/",
        "gitops/argocd/",
        ".github/",
    )


def test_layout_paths() -> None:
    assert layout.site_file("geddes") == "gitops/sites/geddes.yaml"
    assert layout.experiment_file("cms") == "experiments/cms/experiment.yaml"
    assert layout.deployment_file("cms", "minimal") == "experiments/cms/minimal.yaml"
    assert layout.lock_file("cms", "minimal") == "experiments/cms/locks/minimal.repository.lock.json"
    assert layout.rendered_dir("uchicago", "cms", "minimal") == "gitops/rendered/uchicago/cms/minimal"
    assert layout.namespace_dir("uchicago", "cms-sonic") == "gitops/rendered/uchicago/_namespaces/cms-sonic"
    assert layout.argocd_dir("uchicago") == "gitops/argocd/uchicago"


def test_layout_paths_are_what_the_loader_classifies(tmp_path: Path) -> None:
    assert classify(tmp_path, tmp_path / layout.site_file("s")) == "site"
    assert classify(tmp_path, tmp_path / layout.experiment_file("e")) == "experiment"
    assert classify(tmp_path, tmp_path / layout.deployment_file("e", "d")) == "deployment"
    assert classify(tmp_path, tmp_path / layout.rendered_dir("s", "e", "d") / "x.yaml") is None
    deployment = tmp_path / layout.deployment_file("e", "d")
    assert lock_path(deployment, "d") == tmp_path / layout.lock_file("e", "d")


@pytest.fixture(scope="module")
def tree() -> Tree:
    return support.tree()


def test_ref_names_a_deployment_and_each_of_its_placements(tree: Tree) -> None:
    d: Deployment = tree.deployments[0]
    assert d.ref == f"{d.experiment}/{d.name}" == deployment_ref(d.experiment, d.name)
    for p in d.placements:
        assert p.ref == d.ref == names.deployment_ref(p)
        assert names.rendered_dir(p) == layout.rendered_dir(p.site, d.experiment, d.name)
    assert tree.deployment(d.ref) is d
    # A property, never a field: the check spec (model_dump) stays as it is.
    assert "ref" not in d.placements[0].model_dump()


def test_labels_of_a_placement_are_the_managed_ones_plus_its_selector(tree: Tree) -> None:
    p = tree.placements_at()[0]
    assert names.labels(p, "triton") == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": p.name,
        "app.kubernetes.io/part-of": "sonic",
        "app.kubernetes.io/managed-by": "sonic-gitops",
        "sonic.fastml.org/experiment": p.experiment,
        "sonic.fastml.org/site": p.site,
    }
    assert names.managed_labels() == {
        "app.kubernetes.io/part-of": "sonic",
        "app.kubernetes.io/managed-by": "sonic-gitops",
    }


def test_pipeline_defaults_agree_between_the_repository_file_and_the_pipelines() -> None:
    repo, pipelines = repository.DEFAULT, settings.DEFAULT
    assert pipelines.image == repo.pipeline_image == names.PIPELINE_IMAGE
    assert pipelines.run_as_user == repo.pipeline_user == names.PIPELINE_UID
    assert pipelines.gitops_branch == repo.branch == names.GITOPS_BRANCH
    assert pipelines.check_client == repo.check_client_secret == names.CHECK_CLIENT_SECRET
    assert pipelines.github_read_token.name == repo.github_read_token_secret == names.GITHUB_READ_TOKEN_SECRET
    properties = repository.SCHEMA["properties"]
    assert properties["pipelineUser"]["default"] == names.PIPELINE_UID
    assert properties["checkClientSecret"]["default"] == names.CHECK_CLIENT_SECRET
    assert properties["githubReadToken"]["default"] == names.GITHUB_READ_TOKEN_SECRET
