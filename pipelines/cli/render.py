"""``sonic render`` and ``sonic diff``: write, check and explain the rendered GitOps tree.

The tree (``gitops/rendered`` and ``gitops/argocd``, and ``.github/CODEOWNERS``) is written atomically: everything is
rendered into a scratch directory beside it, then each directory is swapped in with one
``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel or file system lacks it), and each
single file with one ``rename``. An
interrupted render leaves the previous tree as it was; files of removed deployments disappear
because the whole directory is replaced. Scratch directories of a killed run
(``gitops/.sonic-render-*``) are removed by the next run.
"""

from __future__ import annotations

import ctypes
import difflib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import click

from pipelines.cli import EXIT_INVALID, cli, die, err, out, report_errors
from pipelines.cli.options import deployment_or_die, format_option, load_tree_at, root_option
from pipelines.config import ConfigErrors, Tree, layout, names
from pipelines.config.names import NAMESPACES_DIR
from pipelines.config.repository import Repository, load_repository
from pipelines.render import ARGOCD, RENDERED, RenderError, read_inputs, render_tree
from pipelines.render.diff_summary import summarize

MANAGED = (RENDERED, ARGOCD)
# Single generated files outside those directories (repository-relative).
MANAGED_FILES = (names.CODEOWNERS_FILE,)
SCRATCH_PREFIX = ".sonic-render-"

_root_option = root_option("Repository to render.")


# --- reading and writing the tree ------------------------------------------------------------------


class UnsafeTreeError(Exception):
    """The rendered tree holds something other than regular files and directories."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


_REFUSED = "only regular files and directories belong under " + " and ".join(MANAGED)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def _read_regular(path: Path) -> str:
    """The text of ``path``, refusing to follow a link swapped in after it was listed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return fh.read().decode("utf-8")


def read_tree(
    root: Path, prefixes: Iterable[str] = MANAGED, single: Iterable[str] = MANAGED_FILES
) -> dict[str, str]:
    """The files under ``prefixes`` (repository-relative directories), and ``single`` files, as ``{path: text}``.

    The tree comes from a pull request, so it is untrusted: a symbolic link (or pipe, socket,
    device) anywhere under it, including the directories themselves, is refused rather than
    followed, so ``sonic render --check`` can never print a file from outside the tree.
    Raises UnsafeTreeError naming every such path.
    """
    files: dict[str, str] = {}
    problems: list[str] = []

    def refuse(path: Path, what: str, rule: str = _REFUSED) -> None:
        rel = path.relative_to(root).as_posix()
        problems.append(
            f"{rel}: is {what}; {rule} (the pull request's author can fix it: "
            f"`git rm {rel}`, then `sonic render` and commit)"
        )

    for one in single:
        path = root / one
        chain = [root / Path(*Path(one).parts[: i + 1]) for i in range(len(Path(one).parts))]
        link = next((d for d in chain if d.is_symlink()), None)
        rule = f"{one} must be a regular file in a real directory"
        if link is not None:
            refuse(link, _kind(link.lstat().st_mode), rule)
        elif path.exists():
            if not stat.S_ISREG(path.lstat().st_mode):
                refuse(path, _kind(path.lstat().st_mode), rule)
                continue
            try:
                files[one] = _read_regular(path)
            except UnicodeDecodeError:
                refuse(path, "not UTF-8 text", rule)
            except OSError:
                refuse(path, "not a regular file", rule)

    for prefix in prefixes:
        base = root / prefix
        # Every directory on the way down, not only the last, must be a real directory.
        chain = [root / Path(*Path(prefix).parts[: i + 1]) for i in range(len(Path(prefix).parts))]
        link = next((d for d in chain if d.is_symlink()), None)
        if link is not None:
            refuse(link, _kind(link.lstat().st_mode))
            continue
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            for name in sorted(dirnames):
                if (here / name).is_symlink():
                    refuse(here / name, "a symbolic link")
            dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
            for name in sorted(filenames):
                path = here / name
                mode = path.lstat().st_mode
                if not stat.S_ISREG(mode):
                    refuse(path, _kind(mode))
                    continue
                try:
                    files[path.relative_to(root).as_posix()] = _read_regular(path)
                except UnicodeDecodeError:
                    refuse(path, "not UTF-8 text")
                except OSError:
                    refuse(path, "not a regular file")
    if problems:
        raise UnsafeTreeError(sorted(problems))
    return dict(sorted(files.items()))


def _in_scope(path: str, scope: Iterable[str]) -> bool:
    return any(path == s or path.startswith(s.rstrip("/") + "/") for s in scope)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: file system or kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(a))


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def clean_scratch(root: Path) -> None:
    """Remove scratch directories left by a render that was killed."""
    for stale in (root / layout.GITOPS_DIR).glob(SCRATCH_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def write_tree(root: Path, files: Mapping[str, str]) -> None:
    """Replace ``gitops/rendered``, ``gitops/argocd`` and the single managed files with exactly ``files``.

    Atomically per directory and per file; a managed file absent from ``files`` is removed.
    """
    gitops = root / layout.GITOPS_DIR
    gitops.mkdir(parents=True, exist_ok=True)
    clean_scratch(root)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=gitops))
    try:
        for rel, text in files.items():
            if not _in_scope(rel, MANAGED) and rel not in MANAGED_FILES:
                raise ValueError(f"refusing to write {rel}: outside {', '.join(MANAGED + MANAGED_FILES)}")
            _write_file(scratch / "new" / rel, text)
        for managed in MANAGED:
            fresh = scratch / "new" / managed
            fresh.mkdir(parents=True, exist_ok=True)
            target = root / managed
            if not target.exists():
                fresh.rename(target)
            elif not _exchange(fresh, target):
                target.rename(scratch / "old")
                fresh.rename(target)
        for one in MANAGED_FILES:
            target = root / one
            if one in files:
                target.parent.mkdir(parents=True, exist_ok=True)
                (scratch / "new" / one).replace(target)
            elif target.is_file():
                target.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unified_diff(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """A unified diff (a/ = committed, b/ = fresh render) of every file that differs."""
    lines: list[str] = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        lines.extend(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"a/{path}" if a is not None else "/dev/null",
                tofile=f"b/{path}" if b is not None else "/dev/null",
            )
        )
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
    return lines


# --- shared steps -----------------------------------------------------------------------------------


def _load(root: Path) -> tuple[Path, Tree, Repository]:
    root, tree = load_tree_at(root)
    try:
        repo = load_repository(root)
    except ConfigErrors as exc:
        report_errors(exc, "text")
    return root, tree, repo


def _read_or_exit(root: Path) -> dict[str, str]:
    """The committed rendered tree, or every unsafe path in it and exit 1."""
    try:
        return read_tree(root)
    except UnsafeTreeError as exc:
        for problem in exc.problems:
            err.print(f"sonic: {problem}", markup=False)
        sys.exit(EXIT_INVALID)


def _render(tree: Tree, repo: Repository, only: set[str] | None = None) -> dict[str, str]:
    """The rendered tree and the single generated files (those always complete, like gitops/argocd)."""
    try:
        return render_tree(tree, read_inputs(tree, repo), only=only)
    except RenderError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        n = len(exc.problems)
        die(f"{n} deployment{'s' if n != 1 else ''} cannot be rendered", EXIT_INVALID)


# --- commands ---------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 with a unified diff if the committed tree is stale."
)
@click.option(
    "--only",
    metavar="DEPLOYMENT",
    multiple=True,
    help="Re-render this deployment (name or experiment/name) and the Argo CD tree; repeat for several.",
)
@_root_option
def render(check: bool, only: tuple[str, ...], root: Path) -> None:
    """Render every deployment's manifests into gitops/rendered and the Argo CD objects into gitops/argocd.

    \b
    gitops/rendered/<site>/<experiment>/<deployment>/<kind>.yaml  + kustomization.yaml
    gitops/argocd/<site>/{appproject,applicationset,kustomization}.yaml
    .github/CODEOWNERS  (who reviews what: experiments' owners, sites' admins, the platform team)

    The output is deterministic: rendering twice gives identical bytes, so CI runs
    `sonic render --check` to prove the committed tree matches the configuration.
    """
    root, tree, repo = _load(root)
    scope: list[str] = list(MANAGED)
    refs: set[str] | None = None
    if only:
        refs = set()
        scope = [ARGOCD]
        for name in only:
            d = deployment_or_die(tree, name)
            refs.add(d.ref)
            # Every site directory of the deployment, including sites it no longer runs at.
            scope += [
                str(path.relative_to(root).as_posix())
                for path in sorted(root.glob(layout.rendered_dir("*", d.experiment, d.name)))
            ] + [layout.rendered_dir(p.site, d.experiment, d.name) for p in d.placements]
        scope += [*MANAGED_FILES, *(f"{RENDERED}/{s}/{NAMESPACES_DIR}" for s in sorted(tree.sites))]
    fresh = _render(tree, repo, refs)
    current = _read_or_exit(root)
    wanted = {k: v for k, v in current.items() if not _in_scope(k, scope)} | fresh
    if check:
        lines = unified_diff(current, wanted)
        if lines:
            sys.stdout.writelines(lines)
            changed = sum(1 for path in set(current) | set(wanted) if current.get(path) != wanted.get(path))
            err.print(
                f"sonic: {changed} rendered file(s) differ from the configuration: run `sonic render` and commit"
            )
            sys.exit(EXIT_INVALID)
        out.print(f"ok: {len(wanted)} rendered files match the configuration")
        return
    if wanted == current:
        out.print(f"unchanged: {len(wanted)} files in {RENDERED}, {ARGOCD} and {', '.join(MANAGED_FILES)}")
        return
    write_tree(root, wanted)
    summary = summarize(current, wanted)
    out.print(f"wrote {len(wanted)} files ({len(summary.units)} directories changed)", markup=False)


@cli.command()
@click.option(
    "--against",
    "ref",
    metavar="GIT_REF",
    help="Compare with the tree committed at GIT_REF (default: at the merge base of the default branch, "
    "what a pull request from here would change; the files on disk when there is no such branch).",
)
@format_option()
@_root_option
def diff(ref: str | None, fmt: str, root: Path) -> None:
    """Summarise, per site and deployment, what rendering the current configuration would change.

    Lists objects added, removed and changed, with the changes that matter spelled out
    (replicas 2 -> 5, image tags, autoscaling limits, thresholds, resources). Exit 0 either way.
    """
    root, tree, repo = _load(root)
    if ref is None:
        ref, why = default_base(root)
        if ref is None:
            err.print(
                f"sonic: comparing with the rendered files on disk ({why}); give --against GIT_REF",
                markup=False,
            )
    before = read_git_tree(root, ref) if ref else _read_or_exit(root)
    after = _render(tree, repo)
    summary = summarize(before, after)
    if fmt == "json":
        click.echo(json.dumps(summary.as_dict(), indent=2, sort_keys=True))
        return
    if summary.empty:
        out.print("no changes: the rendered tree matches the configuration")
        return
    for line in summary.lines():
        out.print(line, markup=False)
    untouched = sorted(set(tree.sites) - {u.site for u in summary.units})
    if untouched:
        out.print(f"no changes at: {', '.join(untouched)}", markup=False)


def default_base(root: Path) -> tuple[str | None, str]:
    """The merge base of HEAD and the default branch (``origin/HEAD``, else main or master), or why none.

    Comparing with the files on disk would say "no changes" right after ``sonic render``; the
    merge base is what a pull request from this branch is compared with.
    """

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    if git("rev-parse", "--verify", "--quiet", "HEAD^{commit}") is None:
        return None, "not a git repository with commits"
    candidates = [git("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")]
    candidates += ["origin/main", "origin/master", "main", "master"]
    for branch in (c for c in candidates if c):
        if git("rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}") is None:
            continue
        base = git("merge-base", "HEAD", branch)
        if base:
            err.print(f"sonic: comparing with {branch} at the merge base {base[:12]}", markup=False)
            return base, ""
        return None, f"no merge base of HEAD and {branch} (a shallow clone?)"
    return None, "no default branch: neither origin/HEAD, main nor master"


def read_git_tree(root: Path, ref: str) -> dict[str, str]:
    """The managed files as committed at ``ref``."""

    def git(*args: str, stdin: str | None = None) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=root, input=stdin, capture_output=True, text=True, check=True, timeout=120
            )
        except FileNotFoundError:
            die("git is not installed")
        except subprocess.CalledProcessError as exc:
            die(f"git {' '.join(args)} failed: {exc.stderr.strip()}")
        return proc.stdout

    names: list[str] = []
    problems: list[str] = []
    for entry in git("ls-tree", "-r", "-z", ref, "--", *MANAGED).split("\0"):
        if not entry:
            continue
        meta, name = entry.split("\t", 1)
        if meta.split()[0] in ("100644", "100755"):
            names.append(name)
        else:  # 120000 is a symbolic link, 160000 a submodule: neither is a rendered file
            what = "a symbolic link" if meta.startswith("120000") else "not a regular file"
            problems.append(f"{name}: is {what} at {ref}; {_REFUSED}")
    if problems:
        for problem in problems:
            err.print(f"sonic: {problem}", markup=False)
        sys.exit(EXIT_INVALID)
    # ls-tree names are relative to ``root``; "<ref>:./<name>" resolves them the same way.
    return {name: git("show", f"{ref}:./{name}") for name in names}
