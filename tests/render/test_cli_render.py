"""``sonic render`` / ``sonic render --check`` / ``--only`` / ``sonic diff`` on copies of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import pipelines.cli.render as render_cli
from pipelines.cli import cli
from pipelines.cli.render import SCRATCH_PREFIX, read_tree, write_tree
from pipelines.render import read_inputs, render_tree
from tests.conftest import ROOT, copy_fixture
from tests.render.support import tree

GIT = shutil.which("git")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A copy of the fixture tree: configuration and its committed rendered tree."""
    yield copy_fixture(tmp_path / "repo")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "gitops").rglob("*"))
        if p.is_file()
    }


def test_check_passes_on_the_committed_tree() -> None:
    # The live repository's guard: its committed render is current (the other tests use copies of the fixture tree).
    result = run("render", "--check", "--root", str(ROOT))
    assert result.exit_code == 0, result.output


def test_check_fails_with_a_diff_on_a_hand_edited_file(repo: Path) -> None:
    target = repo / "gitops/rendered/nautilus/cms/particlenet/deployment.yaml"
    target.write_text(target.read_text().replace("replicas: 5", "replicas: 7"))
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1
    assert "--- a/gitops/rendered/nautilus/cms/particlenet/deployment.yaml" in result.output
    assert "-  replicas: 7" in result.output and "+  replicas: 5" in result.output


def test_check_reports_missing_and_extra_files(repo: Path) -> None:
    (repo / "gitops/rendered/nautilus/cms/particlenet/ingress.yaml").unlink()
    (repo / "gitops/rendered/nautilus/cms/particlenet/stray.yaml").write_text("kind: Stray\n")
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1
    assert "+++ b/gitops/rendered/nautilus/cms/particlenet/ingress.yaml" in result.output
    assert "--- a/gitops/rendered/nautilus/cms/particlenet/stray.yaml" in result.output


def test_render_restores_the_tree_and_is_byte_identical(repo: Path) -> None:
    before = _snapshot(repo)
    shutil.rmtree(repo / "gitops/rendered")
    (repo / "gitops/argocd/nautilus/applicationset.yaml").write_text("edited\n")
    assert run("render", "--root", str(repo)).exit_code == 0
    assert _snapshot(repo) == before
    result = run("render", "--root", str(repo))
    assert result.exit_code == 0 and "unchanged" in result.output
    assert _snapshot(repo) == before


def test_rendering_twice_is_byte_identical() -> None:
    assert render_tree(tree(), read_inputs(tree())) == render_tree(tree(), read_inputs(tree()))


def test_removed_deployment_leaves_no_stale_files(repo: Path) -> None:
    (repo / "experiments/atlas/traccc.yaml").unlink()
    assert run("render", "--root", str(repo)).exit_code == 0
    assert not (repo / "gitops/rendered/nautilus/atlas/traccc").exists()
    assert "traccc" not in (repo / "gitops/argocd/nautilus/applicationset.yaml").read_text()
    assert (repo / "gitops/rendered/uchicago/atlas/exatrkx/deployment.yaml").exists()


def test_only_rerenders_one_deployment(repo: Path) -> None:
    other = repo / "gitops/rendered/geddes/cms/particlenet/deployment.yaml"
    other.write_text(other.read_text() + "# hand edit elsewhere\n")
    target = repo / "gitops/rendered/nautilus/atlas/traccc/deployment.yaml"
    target.unlink()
    result = run("render", "--only", "atlas/traccc", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert target.exists()
    assert other.read_text().endswith("# hand edit elsewhere\n")  # untouched
    assert run("render", "--only", "atlas/traccc", "--check", "--root", str(repo)).exit_code == 0
    assert run("render", "--check", "--root", str(repo)).exit_code == 1  # the other edit remains
    assert run("render", "--only", "nope", "--root", str(repo)).exit_code == 2


def test_interrupted_render_leaves_the_old_tree(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _snapshot(repo)
    files = render_tree(tree(), read_inputs(tree()))
    files = {k: v.replace("replicas: 5", "replicas: 6") for k, v in files.items()}
    written = 0
    real = render_cli._write_file

    def interrupted(path: Path, text: str) -> None:
        nonlocal written
        written += 1
        if written > 20:
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(render_cli, "_write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_tree(repo, files)
    assert _snapshot(repo) == before
    assert not list((repo / "gitops").glob(SCRATCH_PREFIX + "*"))


def test_leftovers_of_a_killed_render_are_removed(repo: Path) -> None:
    leftover = repo / "gitops" / f"{SCRATCH_PREFIX}killed" / "new" / "gitops" / "rendered"
    leftover.mkdir(parents=True)
    (repo / "experiments/cms/particlenet.yaml").write_text(
        (repo / "experiments/cms/particlenet.yaml").read_text().replace("replicas: 5 ", "replicas: 6 ")
    )
    assert run("render", "--root", str(repo)).exit_code == 0
    assert not list((repo / "gitops").glob(SCRATCH_PREFIX + "*"))
    assert "replicas: 6" in (repo / "gitops/rendered/nautilus/cms/particlenet/deployment.yaml").read_text()


def test_write_tree_swaps_in_exactly_the_given_files(repo: Path) -> None:
    files = {"gitops/rendered/a/b/c/x.yaml": "x: 1\n", "gitops/argocd/a/y.yaml": "y: 1\n"}
    write_tree(repo, files)
    assert read_tree(repo) == files
    assert (repo / "gitops/sites/nautilus.yaml").exists()  # inputs untouched
    with pytest.raises(ValueError, match="outside"):
        write_tree(repo, {"gitops/sites/evil.yaml": "x"})


def test_missing_lock_is_a_clear_error(repo: Path) -> None:
    (repo / "experiments/cms/locks/minimal.repository.lock.json").unlink(missing_ok=True)
    before = _snapshot(repo)
    result = CliRunner().invoke(cli, ["render", "--root", str(repo)])
    assert result.exit_code == 1
    assert "experiments/cms/minimal.yaml" in result.output and "sonic build-models" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(repo) == before


def test_diff_summarises_a_change(repo: Path) -> None:
    path = repo / "experiments/cms/particlenet.yaml"
    text = (
        path.read_text()
        .replace("replicas: 5 ", "replicas: 4 ")
        .replace("tritonserver:24.08-py3", "tritonserver:24.09-py3")
    )
    path.write_text(text)
    result = run("diff", "--root", str(repo))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "site nautilus" in out and "site geddes" in out
    assert "~ Deployment particlenet-triton: replicas 5 -> 4" in out
    assert "tritonserver:24.08-py3 -> nvcr.io/nvidia/tritonserver:24.09-py3" in out
    assert "no changes at: anvil, uchicago" in out
    assert run("diff", "--format", "json", "--root", str(repo)).output.count('"changed": true') == 1


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_diff_against_a_git_ref(repo: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            timeout=60,
        )

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    (repo / "experiments/atlas/traccc.yaml").unlink()
    assert run("render", "--root", str(repo)).exit_code == 0
    result = run("diff", "--against", "HEAD", "--root", str(repo))
    assert "atlas/traccc (removed)" in result.output
    assert "- Deployment traccc-triton" in result.output
    assert "run `sonic render`" not in result.output


def test_only_is_repeatable(repo: Path) -> None:
    other = repo / "gitops/rendered/geddes/cms/particlenet/deployment.yaml"
    other.write_text(other.read_text() + "# hand edit elsewhere\n")
    targets = [
        repo / "gitops/rendered/nautilus/atlas/traccc/deployment.yaml",
        repo / "gitops/rendered/uchicago/atlas/exatrkx/deployment.yaml",
    ]
    for target in targets:
        target.unlink()
    result = run("render", "--only", "atlas/traccc", "--only", "exatrkx", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert all(target.exists() for target in targets)
    assert other.read_text().endswith("# hand edit elsewhere\n")  # untouched
    check = run("render", "--only", "traccc", "--only", "atlas/exatrkx", "--check", "--root", str(repo))
    assert check.exit_code == 0, check.output
    assert run("render", "--only", "traccc", "--only", "nope", "--root", str(repo)).exit_code == 2


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_plain_diff_compares_with_the_merge_base_of_the_default_branch(repo: Path) -> None:
    """After `sonic render` the files on disk match: the change shows against where the branch began."""

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            timeout=60,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "feature")
    path = repo / "experiments/cms/particlenet.yaml"
    path.write_text(path.read_text().replace("replicas: 5 ", "replicas: 4 "))
    assert run("render", "--root", str(repo)).exit_code == 0
    git("commit", "-qam", "four replicas at nautilus")

    result = run("diff", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert "comparing with main at the merge base" in result.stderr
    assert "~ Deployment particlenet-triton: replicas 5 -> 4" in result.stdout


def test_plain_diff_outside_git_compares_with_the_files_on_disk_and_says_so(repo: Path) -> None:
    result = run("diff", "--root", str(repo))
    assert result.exit_code == 0, result.output
    assert "comparing with the rendered files on disk (not a git repository with commits)" in result.stderr
    assert "no changes" in result.stdout


# --- the committed tree is untrusted input (issue 11, finding 9) ------------------------------------

SECRET_OUTSIDE = "root:x:0:0:outside-the-repository-marker\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the repository that a hostile pull request would like printed."""
    target = tmp_path / "outside" / "passwd"
    target.parent.mkdir()
    target.write_text(SECRET_OUTSIDE)
    return target


@pytest.mark.parametrize("command", [["render", "--check"], ["diff"], ["render"]])
def test_a_symlinked_file_is_refused_and_never_read(repo: Path, outside: Path, command: list[str]) -> None:
    link = repo / "gitops/rendered/nautilus/cms/particlenet/deployment.yaml"
    link.unlink()
    link.symlink_to(outside)
    result = run(*command, "--root", str(repo))
    assert result.exit_code == 1
    assert "outside-the-repository-marker" not in result.output
    assert (
        "sonic: gitops/rendered/nautilus/cms/particlenet/deployment.yaml: is a symbolic link; "
        "only regular files and directories belong under gitops/rendered and gitops/argocd "
        "(the pull request's author can fix it: `git rm gitops/rendered/nautilus/cms/particlenet/deployment.yaml`"
    ) in result.output
    assert "Traceback" not in result.output


def test_a_symlinked_directory_is_refused(repo: Path, outside: Path) -> None:
    (repo / "gitops/argocd/evil").symlink_to(outside.parent, target_is_directory=True)
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1
    assert "sonic: gitops/argocd/evil: is a symbolic link" in result.output
    assert "outside-the-repository-marker" not in result.output


def test_the_managed_directory_itself_may_not_be_a_link(repo: Path, outside: Path) -> None:
    shutil.rmtree(repo / "gitops/rendered")
    (repo / "gitops/rendered").symlink_to(outside.parent, target_is_directory=True)
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1
    assert "sonic: gitops/rendered: is a symbolic link" in result.output
    assert "outside-the-repository-marker" not in result.output


def test_a_named_pipe_is_refused_without_blocking(repo: Path) -> None:
    os.mkfifo(repo / "gitops/rendered/nautilus/cms/particlenet/pipe.yaml")
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1
    assert "sonic: gitops/rendered/nautilus/cms/particlenet/pipe.yaml: is a named pipe" in result.output


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_diff_against_a_ref_refuses_a_committed_symlink(repo: Path, outside: Path) -> None:
    link = repo / "gitops/rendered/nautilus/cms/particlenet/deployment.yaml"
    link.unlink()
    link.symlink_to(outside)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            timeout=60,
        )
    link.unlink()
    link.write_text("kind: Deployment\n")
    result = run("diff", "--against", "HEAD", "--root", str(repo))
    assert result.exit_code == 1
    assert (
        "sonic: gitops/rendered/nautilus/cms/particlenet/deployment.yaml: is a symbolic link at HEAD; "
        "only regular files and directories belong under gitops/rendered and gitops/argocd"
    ) in result.output
    assert "outside-the-repository-marker" not in result.output


# --- .github/CODEOWNERS (issue 11, finding 2) -------------------------------------------------------


def test_check_fails_on_a_hand_edited_or_missing_codeowners(repo: Path) -> None:
    codeowners = repo / ".github" / "CODEOWNERS"
    codeowners.write_text(
        codeowners.read_text().replace("/experiments/atlas/ ", "/experiments/atlas/ @mallory ")
    )
    result = run("render", "--check", "--root", str(repo))
    assert (
        result.exit_code == 1
        and "--- a/.github/CODEOWNERS" in result.output
        and "-/experiments/atlas/ @mallory" in result.output
    )
    assert run("render", "--root", str(repo)).exit_code == 0
    assert "@mallory" not in codeowners.read_text()
    codeowners.unlink()
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1 and "+++ b/.github/CODEOWNERS" in result.output
    assert run("render", "--root", str(repo)).exit_code == 0 and codeowners.is_file()
    assert run("render", "--check", "--root", str(repo)).exit_code == 0


def test_codeowners_may_not_be_a_link(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not print me\n")
    codeowners = repo / ".github" / "CODEOWNERS"
    codeowners.unlink()
    codeowners.symlink_to(secret)
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1 and "do not print me" not in result.output
    assert (
        ".github/CODEOWNERS: is a symbolic link; .github/CODEOWNERS must be a regular file" in result.output
    )
    codeowners.unlink()
    shutil.rmtree(repo / ".github")
    (repo / ".github").symlink_to(tmp_path)
    result = run("render", "--check", "--root", str(repo))
    assert result.exit_code == 1 and ".github: is a symbolic link" in result.output
