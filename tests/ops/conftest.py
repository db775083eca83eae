"""Fixtures for the pipeline tests: real git repositories (a bare "GitHub" on disk) and the CRDs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OWNER_REPO = "fastml/sonic-gitops"
PERSON = {
    "GIT_AUTHOR_NAME": "Alice Analyst",
    "GIT_AUTHOR_EMAIL": "alice@example.org",
    "GIT_COMMITTER_NAME": "Alice Analyst",
    "GIT_COMMITTER_EMAIL": "alice@example.org",
}


def git(cwd: Path, *args: str) -> str:
    """Run git as a person (not the bot), isolated from the machine's git configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= PERSON | {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@dataclass(frozen=True)
class Origin:
    """A bare repository standing in for GitHub: ``<server>/<owner>/<name>.git`` over file://."""

    server: str  # file:// URL, what `--server` takes
    bare: Path
    work: Path  # a person's clone, to make commits and pull requests

    @property
    def url(self) -> str:
        return f"{self.server}/{OWNER_REPO}.git"

    def commit_all(self, message: str) -> str:
        git(self.work, "add", "--all")
        git(self.work, "commit", "--quiet", "-m", message)
        return git(self.work, "rev-parse", "HEAD")

    def push(self, ref: str) -> None:
        git(self.work, "push", "--quiet", "origin", f"HEAD:{ref}")

    def pull_request(self, number: int, branch: str, files: dict[str, str], message: str) -> str:
        """Alice writes ``files`` (path -> text) on a new ``branch`` and opens pull request ``number``.

        Returns the pull request's head commit.
        """
        git(self.work, "checkout", "--quiet", "-b", branch)
        for path, text in files.items():
            (self.work / path).write_text(text)
        sha = self.commit_all(message)
        self.push(f"refs/pull/{number}/head")  # what GitHub creates for every pull request
        return sha

    def rev(self, ref: str) -> str:
        return git(self.bare, "rev-parse", ref)


@pytest.fixture
def origin(tmp_path: Path, example_tree: Path) -> Origin:
    """A bare repository whose ``main`` holds the example tree (experiments/, gitops/sites/)."""
    server = tmp_path / "server"
    bare = server / OWNER_REPO.split("/")[0] / f"{OWNER_REPO.split('/')[1]}.git"
    bare.parent.mkdir(parents=True)
    git(server, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "alice"
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    for part in ("experiments", "gitops"):
        shutil.copytree(example_tree / part, work / part)
    o = Origin(f"file://{server}", bare, work)
    o.commit_all("example tree")
    o.push("refs/heads/main")
    return o
