"""Git for the pipeline steps: check out a pull request, publish rendered files as the bot, revert.

Everything runs the real ``git`` binary. Credentials never reach a command line or ``.git/config``:
the token travels in ``GIT_CONFIG_*`` environment variables as an HTTP ``Authorization`` header
(what ``git -c http.extraHeader=...`` would do, without showing it in ``ps``). User and system
git configuration are ignored, so a step behaves the same on a laptop and in a pod.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.ops.errors import RemoteError

GIT_TIMEOUT = 300.0  # seconds for any one git command (a clone of a large repository included)
PUSH_ATTEMPTS = 3  # a concurrent rollout may push first: fetch, rebase, try again
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class GitError(RemoteError):
    """A git command failed; ``transient`` when retrying later may help (network, a push race)."""


@dataclass(frozen=True)
class BotIdentity:
    """Author and committer of every commit a pipeline makes."""

    name: str = "sonic-gitops-bot"
    email: str = "sonic-gitops-bot@users.noreply.github.com"


@dataclass(frozen=True)
class Checkout:
    """A pull request (or branch) checked out at one commit, and what it changes."""

    path: Path
    head: str  # commit checked out (detached)
    base: str | None  # merge base with the base branch, when one was asked for
    changed: tuple[str, ...]  # repository-relative paths that differ between base and head


@dataclass(frozen=True)
class Published:
    """The result of publishing files to a branch."""

    commit: str  # the new commit, or the branch head when nothing changed
    changed: bool


_NETWORK_HINTS = (
    "could not resolve host",
    "connection timed out",
    "connection refused",
    "failed to connect",
    "the remote end hung up",
    "early eof",
    "rpc failed",
    "operation timed out",
    "temporary failure",
    "http 5",
    "error: 5",
)


def _auth_env(token: str | None) -> dict[str, str]:
    entries: list[tuple[str, str]] = [
        ("safe.directory", "*")
    ]  # workspace volumes may be owned by another uid
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        entries.append(("http.extraHeader", f"Authorization: Basic {basic}"))
    env = {"GIT_CONFIG_COUNT": str(len(entries))}
    for i, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


class Git:
    """Runs git in one working directory with a fixed environment (identity, token, no prompts)."""

    def __init__(self, cwd: Path, token: str | None = None, identity: BotIdentity | None = None):
        self.cwd = cwd
        self._token = token
        who = identity or BotIdentity()
        base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self.env: Mapping[str, str] = {
            **base,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": who.name,
            "GIT_AUTHOR_EMAIL": who.email,
            "GIT_COMMITTER_NAME": who.name,
            "GIT_COMMITTER_EMAIL": who.email,
            "LC_ALL": "C",  # messages matched below are English
            **_auth_env(token),
        }

    def __call__(self, *args: str, check: bool = True) -> str:
        """Run ``git ARGS``; returns stdout, raises GitError (token scrubbed) when it fails."""
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                env=dict(self.env),
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise GitError("git is not installed") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} did not finish within {GIT_TIMEOUT:.0f}s", transient=True) from exc
        if check and proc.returncode != 0:
            detail = self._scrub((proc.stderr or proc.stdout).strip())
            transient = any(h in detail.lower() for h in _NETWORK_HINTS)
            raise GitError(f"git {' '.join(self._scrub(a) for a in args)}: {detail}", transient=transient)
        return proc.stdout

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def rev(self, ref: str) -> str:
        return self("rev-parse", "--verify", f"{ref}^{{commit}}").strip()


def checkout(
    url: str,
    dest: Path,
    ref: str,
    *,
    pull_request: int | None = None,
    base_ref: str | None = None,
    on_branch: str | None = None,
    token: str | None = None,
) -> Checkout:
    """Fetch ``ref`` (a commit SHA, branch or tag) from ``url`` into ``dest`` and check it out.

    With ``pull_request``, the commit is fetched from ``refs/pull/<n>/head`` (so pull requests from
    forks work) and ``ref`` must be a commit of it: a pull request pushed again since the event
    still validates the exact commit the event named. With ``base_ref``, the merge base with that
    branch and the files changed since it are computed, as GitHub shows them in the pull request.
    With ``on_branch``, the commit must be reachable from that branch's head (``git merge-base
    --is-ancestor``): a rollout deploys only commits merged into the protected branch, never a
    pull request's or another branch's.
    """
    _fresh(dest)
    git = Git(dest, token)
    git("init", "--quiet")
    git("remote", "add", "origin", url)
    if base_ref:
        git(
            "fetch",
            "--quiet",
            "--no-tags",
            "origin",
            f"+refs/heads/{base_ref}:refs/remotes/origin/{base_ref}",
        )
    if pull_request is not None:
        pr_ref = f"refs/remotes/origin/pr/{pull_request}"
        git("fetch", "--quiet", "--no-tags", "origin", f"+refs/pull/{pull_request}/head:{pr_ref}")
        try:
            head = git.rev(ref)
        except GitError:
            head = ""
        if not head or not _is_ancestor(git, head, pr_ref):
            raise GitError(f"commit {ref} is not part of pull request #{pull_request}")
    else:
        git("fetch", "--quiet", "--no-tags", "origin", ref)
        head = git.rev("FETCH_HEAD")
    if on_branch:
        protected = f"refs/remotes/origin/{on_branch}"
        if on_branch != base_ref:
            git("fetch", "--quiet", "--no-tags", "origin", f"+refs/heads/{on_branch}:{protected}")
        if not _is_ancestor(git, head, protected):
            raise GitError(
                f"commit {head[:12]} ({ref}) is not on branch {on_branch!r}: only commits merged there "
                "may be rolled out"
            )
    git("checkout", "--quiet", "--detach", head)
    base = changed = None
    if base_ref:
        base = git("merge-base", f"refs/remotes/origin/{base_ref}", head).strip()
        names = git("diff", "--name-only", "--no-renames", base, head).splitlines()
        changed = tuple(sorted(n for n in names if n))
    return Checkout(dest, head, base, changed or ())


def _is_ancestor(git: Git, commit: str, ref: str) -> bool:
    try:
        git("merge-base", "--is-ancestor", commit, ref)
    except GitError:
        return False
    return True


def remote_head(url: str, branch: str, token: str | None = None, cwd: Path | None = None) -> str | None:
    """The commit ``branch`` points at on ``url``, or None when the branch does not exist."""
    git = Git(cwd or Path.cwd(), token)
    out = git("ls-remote", "--heads", url, f"refs/heads/{branch}")
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == f"refs/heads/{branch}":
            return sha
    return None


def clone_branch(url: str, branch: str, dest: Path, token: str | None = None) -> Git:
    """A working copy of ``branch`` (a new, empty orphan branch when it does not exist yet)."""
    _fresh(dest)
    git = Git(dest, token)
    git("init", "--quiet")
    git("remote", "add", "origin", url)
    if remote_head(url, branch, token, dest) is None:
        git("checkout", "--quiet", "--orphan", branch)
    else:
        git("fetch", "--quiet", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        git("checkout", "--quiet", "-B", branch, f"refs/remotes/origin/{branch}")
    return git


def publish(
    source: Path,
    paths: Iterable[str],
    url: str,
    branch: str,
    message: str,
    workdir: Path,
    token: str | None = None,
) -> Published:
    """Make ``paths`` on ``branch`` identical to ``source``'s copies, commit as the bot and push.

    A path missing from ``source`` is deleted on the branch (a removed deployment rolls out as a
    removal). Nothing to change means no commit. A push that loses a race with another rollout is
    rebased onto the new branch head and pushed again.
    """
    wanted = sorted(set(paths))
    for rel in wanted:
        _check_relative(rel)
    git = clone_branch(url, branch, workdir, token)
    for rel in wanted:
        target = workdir / rel
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        origin = source / rel
        if origin.is_dir():
            shutil.copytree(origin, target)
        elif origin.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    git("add", "--all", "--", *wanted)
    if not git("status", "--porcelain", "--", *wanted).strip():
        if not _has_commits(git):
            return Published("", changed=False)
        head = git.rev("HEAD")
        # A retried step whose first attempt pushed: the branch head is this very commit.
        ours = git("log", "-1", "--format=%B", "HEAD").strip() == message.strip()
        return Published(head, changed=ours)
    git("commit", "--quiet", "-m", message)
    _push(git, branch)
    return Published(git.rev("HEAD"), changed=True)


def revert(url: str, branch: str, commit: str, workdir: Path, message: str, token: str | None = None) -> str:
    """Revert ``commit`` on ``branch`` (which may have moved on since), push, return the new commit."""
    git = clone_branch(url, branch, workdir, token)
    if not _has_commits(git) or not _is_ancestor(git, commit, "HEAD"):
        raise GitError(f"commit {commit} is not on branch {branch!r}; nothing to revert")
    git("revert", "--no-edit", "--no-commit", commit)
    if not git("status", "--porcelain").strip():
        return git.rev("HEAD")  # already undone by a later commit
    git("commit", "--quiet", "-m", message)
    _push(git, branch)
    return git.rev("HEAD")


class Descendants:
    """Answers "does commit X contain ``commit``?" from a working copy of the GitOps branch.

    Argo CD reports the branch head it synced, which after a neighbour's rollout is a later
    commit than ours. A commit unknown to the working copy is fetched with the branch once per
    poll that sees it; one that is still unknown (or whose fetch failed) does not count, and is
    asked about again next time. Answers about known commits are kept.
    """

    def __init__(self, workdir: Path, branch: str, commit: str, token: str | None = None):
        self._git = Git(workdir, token)
        self._branch = branch
        self._commit = commit
        self._known: dict[str, bool] = {}

    def __call__(self, rev: str) -> bool:
        if not _SHA.match(rev):
            return False  # Argo CD reports commit SHAs; anything else is not a commit of ours
        if rev in self._known:
            return self._known[rev]
        if not self._has(rev):
            try:
                self._git(
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "origin",
                    f"+refs/heads/{self._branch}:refs/remotes/origin/{self._branch}",
                )
            except GitError:
                return False  # the remote is having a moment: ask again on the next poll
            if not self._has(rev):
                return False
        answer = _is_ancestor(self._git, self._commit, rev)
        self._known[rev] = answer
        return answer

    def _has(self, rev: str) -> bool:
        return bool(self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).strip())


def _fresh(dest: Path) -> None:
    """An empty directory at ``dest``; a previous attempt's git working copy there is removed.

    Argo retries a step in the same workspace volume, so a half-done clone must not block the
    retry; anything that is not a git working copy is never deleted.
    """
    if dest.exists() and any(dest.iterdir()):
        if not (dest / ".git").is_dir():
            raise GitError(f"{dest}: not empty and not a working copy; give an empty directory")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)


def _has_commits(git: Git) -> bool:
    return bool(git("rev-parse", "--verify", "--quiet", "HEAD", check=False).strip())


def _push(git: Git, branch: str) -> None:
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
            return
        except GitError as exc:
            text = str(exc).lower()
            raced = "non-fast-forward" in text or "fetch first" in text or "rejected" in text
            if not raced or attempt == PUSH_ATTEMPTS:
                raise GitError(str(exc), transient=exc.transient or raced) from exc
        git("fetch", "--quiet", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        git("rebase", "--quiet", f"refs/remotes/origin/{branch}")


def _check_relative(rel: str) -> None:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] == ".git":
        raise GitError(f"{rel!r}: must be a path inside the repository")
