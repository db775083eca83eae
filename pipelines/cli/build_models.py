"""``sonic build-models``: a deployment's verified Triton model repository, snapshot and lock file."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pipelines.cli import EXIT_INVALID, cli, die, err, report_errors
from pipelines.cli.options import (
    deployment_argument,
    dir_option,
    file_option,
    find_root_or_die,
    format_option,
    root_option,
)
from pipelines.config import ConfigErrors, Deployment, layout
from pipelines.config.checked import check_tree
from pipelines.config.errors import display_path
from pipelines.config.model import deployment_ref
from pipelines.config.tree import classify, relevant

if TYPE_CHECKING:
    from pipelines.modelrepo.build import BuildResult

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1000, "KIB": 1024, "M": 1024**2, "MB": 1000**2, "MIB": 1024**2}
_UNITS |= {"G": 1024**3, "GB": 1000**3, "GIB": 1024**3, "T": 1024**4, "TB": 1000**4, "TIB": 1024**4}


class ByteSize(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """``500MiB``, ``2GB``, ``1048576``."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*([0-9]+)\s*([A-Za-z]*)\s*", str(value))
        if m is None or m.group(2).upper() not in _UNITS:
            self.fail(f"{value!r} is not a size (examples: 500MiB, 2GB, 1048576)", param, ctx)
        return int(m.group(1)) * _UNITS[m.group(2).upper()]


class RichObserver:
    """Byte progress bars on stderr (only when it is a terminal), safe to call from worker threads."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def begin(self, key: str, label: str, total: int | None) -> None:
        with self.lock:
            self.tasks[key] = self.progress.add_task(label, total=total)

    def total(self, key: str, total: int) -> None:
        self.progress.update(self.tasks[key], total=total)

    def advance(self, key: str, n: int) -> None:
        self.progress.advance(self.tasks[key], n)

    def reset(self, key: str, completed: int) -> None:
        self.progress.update(self.tasks[key], completed=completed)

    def end(self, key: str) -> None:
        with self.lock:
            task = self.tasks.pop(key, None)
        if task is not None:
            self.progress.remove_task(task)

    def stage(self, name: str, detail: str = "") -> None:
        pass


def _find_deployment(root: Path, name: str, fmt: str) -> tuple[Any, Deployment]:
    """The tree and the deployment called ``name`` (or at path ``name``); exits on errors in what it uses."""
    tree, errors = check_tree(root)
    wanted: Path | None = None
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        wanted = candidate.resolve()
        if classify(root, wanted) != "deployment":
            die(
                f"{name}: not a deployment file (deployments are {layout.deployment_file('<experiment>', '<name>')})"
            )
    else:
        for path, doc in tree.documents.items():
            data = doc.data if isinstance(doc.data, dict) else {}
            if classify(root, path) == "deployment" and name in (
                data.get("name"),
                f"{data.get('experiment')}/{data.get('name')}",
            ):
                if wanted is not None:
                    die(f"{name!r} is ambiguous: give experiment/name or the file path")
                wanted = path
    if wanted is None:
        known = ", ".join(sorted(d.ref for d in tree.deployments)) or "none"
        die(f"{name!r} is not a deployment; known: {known}")
    keep = relevant(tree, {wanted})
    mine = [e for e in errors if Path(e.location.file).resolve() in keep]
    if mine:
        report_errors(ConfigErrors(mine), fmt)
    deployment = next((d for d in tree.deployments if d.source.resolve() == wanted), None)
    if deployment is None:  # only possible when its errors were filtered out above
        die(f"{name!r}: the deployment could not be loaded")
    return tree, deployment


def _default_dest(root: Path) -> Path:
    """``<root>/.sonic/models``, with a .gitignore so that build output never shows up in git."""
    base = root / ".sonic"
    base.mkdir(exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Local build output of sonic (model snapshots, caches): never committed.\n*\n")
    return base / "models"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _as_json(r: BuildResult) -> dict[str, Any]:
    def path(p: Path | None) -> str | None:
        return display_path(p) if p is not None else None

    return {
        "ok": True,
        "experiment": r.experiment,
        "deployment": r.deployment,
        "file": display_path(r.source),
        "models": [m.__dict__ for m in r.models],
        "inPlace": [s.__dict__ for s in r.in_place],
        "snapshot": r.lock.snapshot if r.lock else None,
        "snapshotPath": path(r.snapshot),
        "snapshotCreated": r.snapshot_created,
        "bytesCopied": r.copied,
        "localSnapshotPath": path(r.local_snapshot),
        "localCreated": r.local_created,
        "localSkipped": [{"model": m, "reason": why} for m, why in r.local_skipped],
        "lockFile": path(r.lock_file),
        "lock": r.lock_status,
    }


def _print_text(r: BuildResult, dry_run: bool) -> None:
    echo = click.echo
    echo(f"{deployment_ref(r.experiment, r.deployment)} ({display_path(r.source)})")
    for m in r.models:
        if m.kind == "artifact":
            moved = f", {_human(m.transferred)} transferred" if m.transferred else ", cached"
            echo(
                f"  model {m.name}: {m.source} sha256 {m.sha256[:12]}... verified ({_human(m.size)}{moved}); "
                f"config {m.config}; ONNX graph {m.graph}"
            )
            if m.note:
                echo(f"  model {m.name}: {m.note}")
        else:
            echo(
                f"  model {m.name}: served in place (its config.pbtxt is checked where the repository is mounted)"
            )
    for s in r.in_place:
        echo(f"  {s.kind} {s.location}: {'verified, ' if s.verified else ''}{s.detail}")
    if r.cleaned:
        echo(f"  removed {r.cleaned} partial snapshot(s) left by an interrupted build")
    if dry_run:
        digest = r.lock.snapshot if r.lock else "none (no artifact models)"
        echo(f"dry run: all checks passed; snapshot would be {digest}; nothing published")
        return
    if r.lock is None:
        why = "removed the stale lock" if r.lock_status == "removed" else "no lock written"
        echo(f"no artifact models: nothing to build; {why} (Triton reads the in-place repositories)")
        return
    state = "published" if r.snapshot_created else "unchanged, nothing copied"
    echo(f"snapshot {r.lock.snapshot} ({state}): {display_path(r.snapshot) if r.snapshot else ''}")
    if r.local_snapshot is not None:
        state = "published" if r.local_created else "unchanged"
        echo(f"local CPU variant ({state}): {display_path(r.local_snapshot)}")
        for model, why in r.local_skipped:
            echo(f"  local: skipped {model}: {why}")
    echo(f"lock {display_path(r.lock_file)} ({r.lock_status})")


def _verify(dep: Deployment, dest: Path, fmt: str) -> None:
    """``--verify``: re-hash the stored files the committed lock names; exit 1 on any difference."""
    from pipelines.modelrepo.build import default_workers
    from pipelines.modelrepo.lock import lock_path, read_lock
    from pipelines.modelrepo.verify import lock_problems, verify_lock

    name = f"{dep.ref}"
    lock_file = lock_path(dep.source, dep.name)
    try:
        lock = read_lock(dep.source, dep.name)
    except (ValueError, KeyError, TypeError) as exc:
        die(
            f"{display_path(lock_file)}: not a lock file ({exc}): nothing verified (the experiment can "
            f"rebuild it: `sonic build-models {name}`, then commit the lock)",
            EXIT_INVALID,
        )
    if lock is None:
        if any(m.artifact is not None for p in dep.placements for m in p.models):
            die(f"{name} has no lock ({display_path(lock_file)}): build it first", EXIT_INVALID)
        click.echo(f"{name}: no artifact models, no lock: nothing to verify")
        return
    problems = lock_problems(lock)
    if problems:
        for problem in problems:
            err.print(f"{display_path(lock_file)}: {problem}", markup=False)
        die(
            f"{display_path(lock_file)} is not a lock sonic build-models wrote: nothing verified "
            f"(the experiment can rebuild it: `sonic build-models {name}`, then commit the lock)",
            EXIT_INVALID,
        )
    result = verify_lock(dest, lock, workers=default_workers())
    if fmt == "json":
        body = {
            "ok": result.ok,
            "deployment": name,
            "lockFile": display_path(lock_file),
            "snapshot": lock.snapshot,
            "parts": [
                {"name": p.name, "path": display_path(p.path), "present": p.present, "files": p.files}
                for p in result.parts
            ],
            "mismatches": [
                {"file": display_path(p.path / m.path), "expected": m.expected, "actual": m.actual}
                for p, m in result.mismatches
            ],
        }
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"{name}: verifying {display_path(lock_file)} against {display_path(dest)}")
        for p in result.parts:
            state = "intact" if not p.mismatches else f"{len(p.mismatches)} difference(s)"
            if p.name == "cache":
                missing = f"; {p.absent} not cached" if p.absent else ""
                click.echo(
                    f"  cache: {p.files} entr{'y' if p.files == 1 else 'ies'} re-hashed, {state}{missing}"
                )
            elif p.present:
                click.echo(f"  {p.name} {display_path(p.path)}: {p.files} files re-hashed, {state}")
            else:
                click.echo(f"  {p.name}: not in {display_path(dest)}")
        for p, m in result.mismatches:
            click.echo(f"MODIFIED {display_path(p.path)}/{m}")
    if not result.parts[0].present:
        die(f"the snapshot {lock.snapshot} is not in {display_path(dest)}: build it first", EXIT_INVALID)
    if result.mismatches:
        die(
            f"{len(result.mismatches)} stored file(s) differ from the lock: never serve them; remove the "
            "modified snapshot (chmod -R u+w DIR && rm -rf DIR) and build again",
            EXIT_INVALID,
        )


@cli.command("build-models")
@deployment_argument
@click.option(
    "--site", "sites", multiple=True, metavar="SITE", help="Check only against this site (repeatable)."
)
@dir_option(
    "--dest",
    help="Snapshot store: snapshots/<digest>/, local/snapshots/<digest>/, cache/. [default: ROOT/.sonic/models]",
)
@click.option(
    "--local", is_flag=True, help="Also publish the CPU variant for the Triton bundled in nvidia-pytriton."
)
@click.option("--dry-run", is_flag=True, help="Verify sources and configs; publish nothing, write no lock.")
@click.option(
    "--verify",
    is_flag=True,
    help="Re-hash, offline, every stored file the committed lock names (snapshot, local variant, cache); "
    "exit 1 on any difference. Builds nothing.",
)
@root_option("Repository to work in.", exists=True)
@file_option(
    "--ca-bundle",
    exists=True,
    help="Trust these CA certificates (PEM) for https artifacts instead of the system store.",
)
@click.option(
    "--max-size",
    type=ByteSize(),
    default=None,
    show_default="32GiB",
    help="Largest artifact accepted (lower still when a site's storage.maxArtifactSize is).",
)
@dir_option(
    "--cvmfs-root",
    default=Path("/"),
    show_default=True,
    help="Where /cvmfs is visible on this machine (CVMFS repositories are verified when present).",
)
@format_option()
def build_models(
    deployment: str,
    sites: tuple[str, ...],
    dest: Path | None,
    local: bool,
    dry_run: bool,
    verify: bool,
    root: Path,
    ca_bundle: Path | None,
    max_size: int | None,
    cvmfs_root: Path,
    fmt: str,
) -> None:
    """Build DEPLOYMENT's Triton model repository from verified artifacts.

    DEPLOYMENT is a name, experiment/name, or the deployment's YAML file. For each model with an
    artifact: fetch it (a file of the experiment, or https with a declared size; resumable, size-limited,
    public addresses only), check its sha256,
    generate config.pbtxt (or check the supplied one), cross-check it with the ONNX graph, and
    publish the repository atomically as DEST/snapshots/<digest>/. The lock file
    experiments/<experiment>/locks/<name>.repository.lock.json records what was built; rendering
    points Triton at that snapshot. CVMFS repositories are verified when mounted.

    Every file of a snapshot is re-hashed before it is published or reused; a modified one is
    refused, never served. --verify re-hashes what the committed lock names, without building.

    \b
    Exit codes: 0 built (or nothing to build; --verify: intact), 1 invalid artifact or config, a
    modified snapshot (--verify: any file differs or the snapshot is missing), 2 usage error.
    """
    # Imported here: the model builder pulls in protobuf, onnx and httpx, which other subcommands need not pay for.
    from pipelines.modelrepo.build import BuildOptions, UsageError, build
    from pipelines.modelrepo.fetch import DEFAULT_MAX_SIZE, FetchPolicy
    from pipelines.modelrepo.snapshot import SnapshotError

    root = find_root_or_die(root)
    tree, dep = _find_deployment(root, deployment, fmt)
    if verify:
        if dry_run or local:
            die("--verify builds nothing: it cannot be combined with --dry-run or --local")
        _verify(dep, (dest or root / ".sonic" / "models").resolve(), fmt)
        return
    dest = (dest or _default_dest(root)).resolve()
    options = BuildOptions(
        dest=dest,
        dry_run=dry_run,
        local=local,
        sites=sites,
        policy=FetchPolicy(max_size=max_size or DEFAULT_MAX_SIZE, ca_bundle=ca_bundle),
        cvmfs_root=cvmfs_root,
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
            result = build(tree, dep, options, RichObserver(progress))
    except ConfigErrors as exc:
        report_errors(exc, fmt)
    except UsageError as exc:
        die(str(exc))
    except SnapshotError as exc:
        die(str(exc), EXIT_INVALID)
    except OSError as exc:
        die(f"cannot use {dest}: {exc.strerror or exc} ({exc.filename or dest})")
    if fmt == "json":
        click.echo(json.dumps(_as_json(result), indent=2))
    else:
        _print_text(result, dry_run)
