"""The smart-HTTP git server the kind test serves the GitOps branch with, exercised with real git.

Argo CD's repo server uses go-git, which does not implement git's "dumb" HTTP protocol (go-git
COMPATIBILITY.md), the one a plain static file server offers (issue 10.6). The helper runs
``git http-backend``; these tests clone, fetch and push through it with the real ``git`` client
(protocol v0 and v2) and check the answers are the smart ones: ref discovery answered with
``Content-Type: application/x-git-upload-pack-advertisement``, which gitprotocol-http(5) makes
the mark of a smart server ("clients SHOULD fall back to the dumb protocol if another content
type is returned"). Runs everywhere (no cluster needed).
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from tests.support.githttp import GitHttpServer


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """``served/sonic-gitops.git`` (bare) with one commit on ``gitops``; ``served`` is the root."""
    root = tmp_path / "served"
    bare = root / "sonic-gitops.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=gitops", str(bare))
    work = tmp_path / "seed"
    git(tmp_path, "init", "--quiet", "--initial-branch=gitops", str(work))
    (work / "gitops/rendered/kind/cms/minimal").mkdir(parents=True)
    (work / "gitops/rendered/kind/cms/minimal/application.json").write_text('{"name": "kind-cms-minimal"}\n')
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", "first rollout")
    git(work, "push", "--quiet", str(bare), "gitops")
    return root


@pytest.mark.parametrize("version", ["0", "2"])
def test_real_git_clones_fetches_and_pushes_over_the_smart_protocol(
    served: Path, tmp_path: Path, version: str
) -> None:
    with GitHttpServer(served, allow_push=True) as server:
        url = server.url("sonic-gitops.git")
        copy = tmp_path / f"copy-v{version}"
        git(
            tmp_path,
            "-c",
            f"protocol.version={version}",
            "clone",
            "--quiet",
            "--branch",
            "gitops",
            url,
            str(copy),
        )
        assert (copy / "gitops/rendered/kind/cms/minimal/application.json").is_file()
        (copy / "gitops/rendered/kind/cms/minimal/service.yaml").write_text("kind: Service\n")
        git(copy, "add", "--all")
        git(copy, "commit", "--quiet", "-m", "second rollout")
        git(copy, "-c", f"protocol.version={version}", "push", "--quiet", "origin", "gitops")
        again = tmp_path / f"again-v{version}"
        git(tmp_path, "clone", "--quiet", "--branch", "gitops", url, str(again))
        assert git(again, "log", "-1", "--format=%s") == "second rollout"
        with urllib.request.urlopen(f"{url}/info/refs?service=git-upload-pack", timeout=30) as answer:
            content_type = answer.headers["Content-Type"]
        requests = list(server.requests)
    assert content_type == "application/x-git-upload-pack-advertisement"
    # Only smart-protocol requests were made: ref discovery with a service, then RPC POSTs.
    paths = [path for _, path, _ in requests]
    assert any(p.endswith("/info/refs?service=git-upload-pack") for p in paths)
    assert any(m == "POST" and p.endswith("/git-upload-pack") for m, p, _ in requests)
    assert any(m == "POST" and p.endswith("/git-receive-pack") for m, p, _ in requests)
    assert not any(p.endswith(("/HEAD", "/objects/info/packs")) for p in paths)  # dumb-protocol files


def test_pushing_is_refused_unless_allowed(served: Path, tmp_path: Path) -> None:
    with GitHttpServer(served) as server:
        copy = tmp_path / "copy"
        git(tmp_path, "clone", "--quiet", "--branch", "gitops", server.url("sonic-gitops.git"), str(copy))
        (copy / "x").write_text("x\n")
        git(copy, "add", "--all")
        git(copy, "commit", "--quiet", "-m", "x")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_TERMINAL_PROMPT": "0"}
        push = subprocess.run(["git", "push", "origin", "gitops"], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
    assert push.returncode != 0


def test_the_checkout_step_retries_a_server_that_is_having_a_moment(served: Path, tmp_path: Path) -> None:
    """`sonic github checkout --attempts`: what the container-set steps rely on (issue 10.9)."""
    with GitHttpServer(served) as server:
        server_url, repo = server.url("").rstrip("/"), "sonic-gitops"
        args = ["github", "checkout", "--repository", f"x/{repo}", "--server", server_url, "--ref", "gitops"]
        # The helper serves root/<path>; the CLI asks for <server>/<owner>/<name>.git.
        (served / "x").mkdir()
        (served / "sonic-gitops.git").rename(served / "x" / "sonic-gitops.git")
        server.fail_next = 1
        once = CliRunner().invoke(cli, [*args, "--dest", str(tmp_path / "once")])
        server.fail_next = 2
        retried = CliRunner().invoke(
            cli, [*args, "--dest", str(tmp_path / "retried"), "--attempts", "3", "--retry-wait", "0"]
        )
    assert once.exit_code == 2, once.output  # a 503 is worth retrying: exit 2
    assert retried.exit_code == 0, retried.output
    assert "attempt 1 of 3" in retried.output and "attempt 2 of 3" in retried.output
    assert (tmp_path / "retried" / "gitops/rendered/kind/cms/minimal/application.json").is_file()
