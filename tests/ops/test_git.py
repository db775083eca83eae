"""Git steps against a real bare repository: pull-request checkout, publish as the bot, revert."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.ops import git as ops_git
from tests.ops.conftest import OWNER_REPO, Origin, git
from tests.ops.fakes import Response, serve

BOT = "sonic-gitops-bot <sonic-gitops-bot@users.noreply.github.com>"


def open_pull_request(origin: Origin, number: int = 7) -> str:
    """Alice changes the minimal deployment on a branch and opens pull request ``number``."""
    path = "experiments/cms/minimal.yaml"
    more = (origin.work / path).read_text().replace("replicas: 2", "replicas: 3")
    return origin.pull_request(number, "more-replicas", {path: more}, "minimal: 3 replicas")


def test_checkout_of_a_pull_request_says_what_it_touches(origin: Origin, tmp_path: Path) -> None:
    sha = open_pull_request(origin)
    # main moves on after the branch was cut: the merge base, not main's tip, is the base.
    git(origin.work, "checkout", "--quiet", "main")
    (origin.work / "README.md").write_text("later\n")
    origin.commit_all("unrelated change on main")
    origin.push("refs/heads/main")
    base = git(origin.work, "rev-parse", "HEAD~1")

    dest, outputs = tmp_path / "src", tmp_path / "outputs"
    result = CliRunner().invoke(
        cli,
        ["github", "checkout", "--repository", OWNER_REPO, "--server", origin.server, "--pr", "7", "--ref", sha,
         "--base-ref", "main", "--relevant", "experiments/", "--relevant", "gitops/sites/", "--dest", str(dest),
         "--outputs", str(outputs)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert git(dest, "rev-parse", "HEAD") == sha
    assert (outputs / "head").read_text() == sha
    assert (outputs / "base-sha").read_text() == base
    assert (outputs / "relevant").read_text() == "true"
    assert json.loads((outputs / "deployments").read_text()) == ["cms/minimal"]

    # The next pipeline step runs in the checkout exactly like this.
    validated = CliRunner().invoke(cli, ["validate", "--changed-against", base, str(dest / "experiments")])
    assert validated.exit_code == 0, validated.output


def test_a_change_outside_the_configuration_is_not_relevant(origin: Origin, tmp_path: Path) -> None:
    sha = origin.pull_request(8, "docs", {"NOTES.md": "notes\n"}, "docs only")
    outputs = tmp_path / "outputs"
    co = CliRunner().invoke(
        cli,
        ["github", "checkout", "--repository", OWNER_REPO, "--server", origin.server, "--pr", "8", "--ref", sha,
         "--base-ref", "main", "--relevant", "experiments/", "--dest", str(tmp_path / "src"), "--outputs", str(outputs)],
    )  # fmt: skip
    assert co.exit_code == 0, co.output
    assert (outputs / "relevant").read_text() == "false"
    assert json.loads((outputs / "deployments").read_text()) == []


def test_a_commit_outside_the_pull_request_is_refused(origin: Origin, tmp_path: Path) -> None:
    open_pull_request(origin)
    main = origin.rev("refs/heads/main")
    git(origin.work, "checkout", "--quiet", "-b", "other")
    (origin.work / "x").write_text("x")
    stranger = origin.commit_all("not in the pull request")
    origin.push("refs/heads/other")
    for ref in (stranger, "0" * 40):
        with pytest.raises(ops_git.GitError, match="not part of pull request #7"):
            ops_git.checkout(origin.url, tmp_path / ref[:6], ref, pull_request=7, base_ref="main")
    assert main  # the base itself is fine to check out without --pr
    co = ops_git.checkout(origin.url, tmp_path / "main", main)
    assert co.head == main and co.changed == ()


def test_a_rollout_checkout_refuses_a_commit_that_is_not_on_the_base_branch(
    origin: Origin, tmp_path: Path
) -> None:
    # Issue 11, finding 15: a rollout names a revision; only commits merged into main may deploy.
    reviewed = origin.rev("refs/heads/main")
    unmerged = open_pull_request(origin)  # on refs/pull/7/head and branch more-replicas, not main
    origin.push("refs/heads/more-replicas")
    git(origin.work, "checkout", "--quiet", "main")
    (origin.work / "README.md").write_text("merged later\n")
    later = origin.commit_all("merged change")
    origin.push("refs/heads/main")

    def checkout(ref: str, dest: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli,
            ["github", "checkout", "--repository", OWNER_REPO, "--server", origin.server, "--ref", ref,
             "--on-branch", "main", "--dest", str(tmp_path / dest), "--outputs", str(tmp_path / f"{dest}-out")],
        )  # fmt: skip
        return result.exit_code, result.output

    for ref in (unmerged, "more-replicas", "refs/pull/7/head"):
        code, output = checkout(ref, ref.replace("/", "-"))
        assert code == 1, output  # a verdict, not worth a retry (exit 2)
        assert "is not on branch 'main'" in output and unmerged[:12] in output
    # The branch head, an older commit of it and the branch name itself all pass.
    for ref, want in ((later, later), (reviewed, reviewed), ("main", later)):
        code, output = checkout(ref, f"ok-{ref[:8]}")
        assert code == 0, output
        assert (tmp_path / f"ok-{ref[:8]}-out" / "head").read_text() == want
    # Without --on-branch the same unmerged commit checks out (what pull-request validation needs).
    co = ops_git.checkout(origin.url, tmp_path / "plain", "more-replicas")
    assert co.head == unmerged
    with pytest.raises(ops_git.GitError, match="not on branch 'main'"):
        ops_git.checkout(origin.url, tmp_path / "api", unmerged, on_branch="main")


def test_the_token_travels_as_a_header_and_never_lands_on_disk(origin: Origin, tmp_path: Path) -> None:
    token = "ghs_secret0123456789abcdef"
    # A git smart-HTTP server that refuses everything: enough to see what git sent.
    with serve(lambda r: Response(403, "forbidden")) as server:
        with pytest.raises(ops_git.GitError) as info:
            ops_git.checkout(f"{server.url}/{OWNER_REPO}.git", tmp_path / "src", "main", token=token)
        first = server.requests[0]
    assert first.path.startswith(f"/{OWNER_REPO}.git/info/refs?service=git-upload-pack")
    assert first.headers["authorization"].startswith("Basic ")
    import base64

    assert base64.b64decode(first.headers["authorization"][6:]).decode() == f"x-access-token:{token}"
    assert token not in str(info.value)
    assert token not in (tmp_path / "src" / ".git" / "config").read_text()


def test_publish_creates_the_branch_commits_as_the_bot_and_is_idempotent(
    origin: Origin, tmp_path: Path
) -> None:
    source = tmp_path / "rendered-checkout"
    rel = "gitops/rendered/uchicago/cms/minimal"
    (source / rel).mkdir(parents=True)
    (source / rel / "deployment.yaml").write_text("kind: Deployment\n")
    (source / rel / "service.yaml").write_text("kind: Service\n")

    first = ops_git.publish(
        source, [rel], origin.url, "gitops", "rollout: cms/minimal at uchicago\n", tmp_path / "w1"
    )
    assert first.changed and origin.rev("refs/heads/gitops") == first.commit
    assert git(origin.bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "gitops") == f"{BOT}|{BOT}"
    assert git(origin.bare, "ls-tree", "-r", "--name-only", "gitops").splitlines() == [
        f"{rel}/deployment.yaml",
        f"{rel}/service.yaml",
    ]

    again = ops_git.publish(source, [rel], origin.url, "gitops", "again\n", tmp_path / "w2")
    assert not again.changed and again.commit == first.commit
    # A retry of the step that pushed (same message, same workspace): still "our" commit, so a
    # failed rollout after it is reverted.
    retried = ops_git.publish(
        source, [rel], origin.url, "gitops", "rollout: cms/minimal at uchicago\n", tmp_path / "w1"
    )
    assert retried.changed and retried.commit == first.commit

    (source / rel / "service.yaml").unlink()
    (source / rel / "deployment.yaml").write_text("kind: Deployment\nspec: {replicas: 3}\n")
    second = ops_git.publish(source, [rel], origin.url, "gitops", "update\n", tmp_path / "w3")
    assert second.changed and git(origin.bare, "rev-parse", "gitops~1") == first.commit
    assert git(origin.bare, "ls-tree", "-r", "--name-only", "gitops").splitlines() == [
        f"{rel}/deployment.yaml"
    ]
    assert "replicas: 3" in git(origin.bare, "show", f"gitops:{rel}/deployment.yaml")


def test_publish_leaves_other_deployments_alone_and_removes_a_deleted_one(
    origin: Origin, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    for rel in ("gitops/rendered/a/cms/one", "gitops/rendered/a/cms/two"):
        (source / rel).mkdir(parents=True)
        (source / rel / "x.yaml").write_text(rel)
    ops_git.publish(
        source,
        ["gitops/rendered/a/cms/one", "gitops/rendered/a/cms/two"],
        origin.url,
        "gitops",
        "m\n",
        tmp_path / "w1",
    )
    shutil.rmtree(source / "gitops/rendered/a/cms/two")
    (source / "gitops/rendered/a/cms/one/x.yaml").write_text("changed but not published")
    result = ops_git.publish(
        source, ["gitops/rendered/a/cms/two"], origin.url, "gitops", "remove two\n", tmp_path / "w2"
    )
    assert result.changed
    assert git(origin.bare, "ls-tree", "-r", "--name-only", "gitops").splitlines() == [
        "gitops/rendered/a/cms/one/x.yaml"
    ]
    assert git(origin.bare, "show", "gitops:gitops/rendered/a/cms/one/x.yaml") == "gitops/rendered/a/cms/one"


def test_a_retried_checkout_replaces_a_half_done_clone_but_nothing_else(
    origin: Origin, tmp_path: Path
) -> None:
    dest = tmp_path / "src"
    (dest / ".git").mkdir(parents=True)
    (dest / "half-written").write_text("x")
    co = ops_git.checkout(origin.url, dest, "main")
    assert co.head == origin.rev("refs/heads/main") and not (dest / "half-written").exists()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data").write_text("keep")
    with pytest.raises(ops_git.GitError, match="not a working copy"):
        ops_git.checkout(origin.url, other, "main")
    assert (other / "data").read_text() == "keep"


def test_paths_must_stay_inside_the_repository(origin: Origin, tmp_path: Path) -> None:
    for i, bad in enumerate(("../outside", "/etc", ".git/hooks")):
        with pytest.raises(ops_git.GitError, match="inside the repository"):
            ops_git.publish(tmp_path, [bad], origin.url, "gitops", "m\n", tmp_path / f"w{i}")
    assert not (tmp_path / "w0").exists()  # refused before anything was cloned


def test_a_lost_push_race_is_rebased_and_pushed(origin: Origin, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "f").write_text("1")
    ops_git.publish(source, ["a"], origin.url, "gitops", "first\n", tmp_path / "w1")
    # Our working copy is made; then another rollout pushes before we do.
    ours = ops_git.clone_branch(origin.url, "gitops", tmp_path / "ours")
    (tmp_path / "ours" / "b").write_text("ours")
    ours("add", "b")
    ours("commit", "--quiet", "-m", "ours")
    theirs = tmp_path / "theirs"
    git(tmp_path, "clone", "--quiet", "--branch", "gitops", str(origin.bare), str(theirs))
    (theirs / "c").write_text("theirs")
    git(theirs, "add", "c")
    git(theirs, "commit", "--quiet", "-m", "theirs")
    git(theirs, "push", "--quiet", "origin", "gitops")

    ops_git._push(ours, "gitops")
    assert git(origin.bare, "log", "--format=%s", "gitops").splitlines() == ["ours", "theirs", "first"]


def test_revert_undoes_exactly_the_rollout_commit(origin: Origin, tmp_path: Path) -> None:
    source = tmp_path / "src"
    rel = "gitops/rendered/uchicago/cms/minimal"
    (source / rel).mkdir(parents=True)
    (source / rel / "deployment.yaml").write_text("replicas: 2\n")
    base = ops_git.publish(source, [rel], origin.url, "gitops", "v1\n", tmp_path / "w1")
    (source / rel / "deployment.yaml").write_text("replicas: 3\n")
    bad = ops_git.publish(source, [rel], origin.url, "gitops", "v2\n", tmp_path / "w2")
    # A neighbour's rollout lands after ours and must survive our revert.
    (source / "gitops/rendered/uchicago/atlas/exatrkx").mkdir(parents=True)
    (source / "gitops/rendered/uchicago/atlas/exatrkx/d.yaml").write_text("x\n")
    ops_git.publish(
        source, ["gitops/rendered/uchicago/atlas/exatrkx"], origin.url, "gitops", "v3\n", tmp_path / "w3"
    )

    new = ops_git.revert(origin.url, "gitops", bad.commit, tmp_path / "w4", "revert rollout\n\nReverts: x\n")
    assert origin.rev("refs/heads/gitops") == new
    assert git(origin.bare, "show", f"gitops:{rel}/deployment.yaml") == "replicas: 2"
    assert git(origin.bare, "show", "gitops:gitops/rendered/uchicago/atlas/exatrkx/d.yaml") == "x"
    assert git(origin.bare, "log", "-1", "--format=%an <%ae>", "gitops") == BOT
    assert base.commit in git(origin.bare, "rev-list", "gitops").splitlines()

    with pytest.raises(ops_git.GitError, match="not on branch"):
        ops_git.revert(origin.url, "gitops", origin.rev("refs/heads/main"), tmp_path / "w5", "m\n")
