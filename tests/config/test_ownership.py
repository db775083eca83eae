"""Ownership: which pull requests stay within one owner (issue 11, finding 2).

The rules are exercised on path lists, then ``sonic owners check`` runs against real git
repositories: a copy of this repository's tree committed as the base, and a pull request's
changes on top.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config.ownership import PLATFORM, Owner, check_paths
from tests.conftest import ROOT, copy_fixture

GIT = shutil.which("git")
CMS = Owner("experiment", "cms")


def test_one_experiments_files_and_what_is_generated_from_them() -> None:
    report = check_paths(
        [
            "experiments/cms/particlenet.yaml",
            "experiments/cms/locks/particlenet.repository.lock.json",
            "experiments/cms/models/btag/model.onnx",
            "gitops/rendered/geddes/cms/particlenet/deployment.yaml",
            "gitops/rendered/nautilus/cms/particlenet/application.json",
        ]
    )
    assert report.ok and report.owner == CMS


def test_an_experiment_yaml_change_may_regenerate_appprojects_and_codeowners() -> None:
    changed = [
        "experiments/cms/experiment.yaml",
        "gitops/argocd/geddes/appproject.yaml",
        ".github/CODEOWNERS",
    ]
    assert check_paths(changed).ok
    # Without the experiment.yaml change, the Argo CD tree and CODEOWNERS are not the experiment's.
    report = check_paths(
        ["experiments/cms/particlenet.yaml", "gitops/argocd/geddes/appproject.yaml", ".github/CODEOWNERS"]
    )
    assert not report.ok and set(report.strays) == {
        "gitops/argocd/geddes/appproject.yaml",
        ".github/CODEOWNERS",
    }
    assert report.strays[".github/CODEOWNERS"] == {PLATFORM}


@pytest.mark.parametrize(
    "other",
    [
        "experiments/atlas/traccc.yaml",  # another experiment's folder
        "gitops/sites/geddes.yaml",  # a site file
        "gitops/repository.yaml",  # the pipeline image, the repository Argo CD reads
        "schemas/deployment.schema.json",
        "pipelines/cli/validate.py",
        "gitops/workflows/pr-validation.yaml",
        ".github/workflows/validate.yaml",
        "scripts/setup.sh",
        ".ci/run",
        "Dockerfile",
        "README.md",  # everything else is the platform team's too
    ],
)
def test_an_experiment_change_may_not_carry_anyone_elses_files(other: str) -> None:
    report = check_paths(["experiments/cms/particlenet.yaml", other])
    assert report.mixed and not report.ok
    assert CMS in report.sources and other in [p for paths in report.sources.values() for p in paths]


def test_another_experiments_rendered_manifests_are_not_generated_from_this_one() -> None:
    report = check_paths(
        ["experiments/cms/particlenet.yaml", "gitops/rendered/nautilus/atlas/traccc/deployment.yaml"]
    )
    assert not report.mixed and report.owner == CMS
    assert report.strays == {
        "gitops/rendered/nautilus/atlas/traccc/deployment.yaml": {
            PLATFORM,
            Owner("site", "nautilus"),
            Owner("experiment", "atlas"),
        }
    }


def test_a_site_change_regenerates_everything_at_that_site_only() -> None:
    base = ["gitops/sites/geddes.yaml", "gitops/rendered/geddes/cms/particlenet/deployment.yaml"]
    assert check_paths([*base, "gitops/argocd/geddes/applicationset.yaml", ".github/CODEOWNERS"]).ok
    report = check_paths([*base, "gitops/rendered/nautilus/cms/particlenet/deployment.yaml"])
    assert list(report.strays) == ["gitops/rendered/nautilus/cms/particlenet/deployment.yaml"]
    assert check_paths(["gitops/sites/geddes.yaml", "gitops/sites/anvil.yaml"]).mixed


def test_infrastructure_changes_may_regenerate_everything() -> None:
    report = check_paths(
        [
            "pipelines/render/envoy/bootstrap.py",
            "gitops/rendered/geddes/cms/particlenet/configmap.yaml",
            "gitops/argocd/nautilus/applicationset.yaml",
            "gitops/workflows/rollout.yaml",
            ".github/CODEOWNERS",
        ]
    )
    assert report.ok and report.owner == PLATFORM
    assert check_paths(["gitops/rendered/geddes/cms/particlenet/configmap.yaml"]).ok  # render --check decides


def test_a_file_moved_between_experiments_counts_for_both() -> None:
    assert check_paths(["experiments/atlas/traccc.yaml", "experiments/cms/traccc.yaml"]).mixed


# --- sonic owners check on real git repositories ---------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    assert GIT is not None
    return subprocess.run([GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The fixture tree (configuration, rendered tree, CODEOWNERS) and the schemas, committed on ``main``."""
    if GIT is None:
        pytest.skip("git is not installed")
    dest = copy_fixture(tmp_path / "repo")
    shutil.copytree(ROOT / "schemas", dest / "schemas")
    git(dest, "init", "--quiet", "--initial-branch=main")
    git(dest, "-c", "user.name=t", "-c", "user.email=t@example.org", "add", "-A")
    git(dest, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "--quiet", "-m", "base")
    return dest


def owners_check(repo: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owners", "check", "--against", "main", "--root", str(repo), *extra])
    return result.exit_code, result.output


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_pull_request_editing_another_experiment_fails_naming_files_and_owners(repo: Path) -> None:
    edit(repo / "experiments/cms/particlenet.yaml", "replicas: 5", "replicas: 6")
    edit(repo / "experiments/atlas/traccc.yaml", "name: traccc", "name: traccc  # mine now")
    code, output = owners_check(repo)
    assert code == 1
    assert "experiments/atlas/traccc.yaml: belongs to experiment 'atlas' (@atlas/tracking-sonic)" in output
    assert (
        "experiments/cms/particlenet.yaml: belongs to experiment 'cms' (@cms-sw/sonic-conveners, @kpedro88)"
        in output
    )
    assert "this change mixes the files of 2 owners (experiment 'atlas', experiment 'cms')" in output
    assert "split it into one pull request per owner (the pull request's author can" in output
    assert "Traceback" not in output


def test_a_pull_request_changing_the_pipeline_image_with_a_deployment_fails(repo: Path) -> None:
    edit(repo / "experiments/cms/particlenet.yaml", "replicas: 5", "replicas: 6")
    edit(repo / "gitops/repository.yaml", "sonic-gitops-pipeline:0.1.0", "sonic-gitops-pipeline:evil")
    code, output = owners_check(repo, "--format", "json")
    assert code == 1
    body = json.loads(output)
    assert body["ok"] is False
    files = {f["path"]: f for f in body["files"]}
    assert files["gitops/repository.yaml"]["owner"] == "the platform team"
    assert files["gitops/repository.yaml"]["handles"] == ["@fastmachinelearning/sonic-platform"]
    assert files["experiments/cms/particlenet.yaml"]["owner"] == "experiment 'cms'"


def test_a_site_file_change_names_its_admins(repo: Path) -> None:
    edit(repo / "gitops/sites/geddes.yaml", "gpuQuota: 12", "gpuQuota: 13")
    (repo / "experiments/cms/new.txt").write_text("untracked files count too\n")
    code, output = owners_check(repo)
    assert code == 1
    assert "gitops/sites/geddes.yaml: belongs to site 'geddes' (@purdue-af/sonic-admins)" in output
    assert "experiments/cms/new.txt: belongs to experiment 'cms'" in output


def test_a_pull_request_with_its_own_rendered_manifests_passes(repo: Path) -> None:
    edit(repo / "experiments/cms/particlenet.yaml", "replicas: 5", "replicas: 6")
    deployment = repo / "gitops/rendered/nautilus/cms/particlenet/deployment.yaml"
    edit(deployment, "replicas: 5", "replicas: 6")
    code, output = owners_check(repo)
    assert code == 0, output
    assert "ok: 2 changed file(s), all of experiment 'cms' (@cms-sw/sonic-conveners, @kpedro88)" in output


def test_another_experiments_rendered_manifests_in_a_pull_request_fail(repo: Path) -> None:
    edit(repo / "experiments/cms/particlenet.yaml", "replicas: 5", "replicas: 6")
    other = repo / "gitops/rendered/nautilus/atlas/traccc/deployment.yaml"
    other.write_text(other.read_text() + "# tampered\n")
    code, output = owners_check(repo)
    assert code == 1
    assert (
        "gitops/rendered/nautilus/atlas/traccc/deployment.yaml: generated from files of experiment 'atlas' or "
        "site 'nautilus' or the platform team (`sonic render`), which this pull request of experiment 'cms' "
        "does not change" in output
    )


def test_an_unknown_base_is_a_usage_error(repo: Path) -> None:
    result = CliRunner().invoke(cli, ["owners", "check", "--against", "nope", "--root", str(repo)])
    assert result.exit_code == 2 and "'nope' is not a commit" in result.output
