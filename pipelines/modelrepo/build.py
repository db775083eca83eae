"""Build one deployment's model repository: check, fetch, verify, publish, lock.

Order matters for the guarantees:

1. every config (generated or supplied) is checked against the declaration and the sites;
2. every artifact is brought into the cache, hashed as it is copied, in parallel; nothing enters
   the cache unless its sha256 is the declared one;
3. ONNX graphs are cross-checked with the configs; in-place repositories verified where visible;
4. only when all of that passed: the snapshot is published atomically (or found already there),
   the ``--local`` variant likewise, and the lock file is written. Every file of a snapshot is
   re-hashed right before it is published or reused (a modified one raises
   :class:`~pipelines.modelrepo.snapshot.SnapshotError` and is never served).

Any problem from steps 1-3 raises :class:`ConfigErrors` with every problem at once; nothing is
published. A dry run stops after step 3, plus the re-hash of any snapshot already published
under the digest it computed (a real build would refuse to reuse a modified one).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigError, ConfigErrors, display_path
from pipelines.config.model import Deployment, Model, Placement
from pipelines.config.modelconfig import pbtxt
from pipelines.config.modelconfig.configcheck import check_config, compare_declared, placements_of
from pipelines.config.modelconfig.onnxcheck import OnnxError, check_graph, read_graph
from pipelines.config.modelconfig.where import InConfigFile, InDeployment, Where
from pipelines.config.tree import Tree
from pipelines.modelrepo import layout, local
from pipelines.modelrepo.cache import Cache, StatCache
from pipelines.modelrepo.cvmfs import InPlaceModel, InPlaceStatus, verify_in_place
from pipelines.modelrepo.fetch import Fetched, FetchError, FetchPolicy, Source, fetch, resolve
from pipelines.modelrepo.integrity import HashMemo
from pipelines.modelrepo.lock import Lock, lock_path, remove_lock, write_lock
from pipelines.modelrepo.progress import Observer, Quiet
from pipelines.modelrepo.snapshot import (
    Entry,
    Published,
    SnapshotError,
    StoreBusy,
    clean_partial,
    modified_message,
    publish,
    snapshot_dir,
    store_lock,
    verify_snapshot,
)


def default_workers() -> int:
    """Parallel transfers/hashes: the cores, at most 4 (beyond that the disk is the limit)."""
    return max(1, min(4, os.cpu_count() or 1))


class UsageError(Exception):
    """The request itself is wrong (unknown site, busy store): exit code 2, not a configuration error."""


@dataclass(frozen=True)
class BuildOptions:
    """How to build: where the store is (``dest``), what to publish, and the limits."""

    dest: Path
    dry_run: bool = False
    local: bool = False
    sites: tuple[str, ...] = ()  # placements to check against; empty: all
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    cvmfs_root: Path = Path("/")
    workers: int = field(default_factory=default_workers)
    lock_timeout: float = 600.0


@dataclass(frozen=True)
class ModelReport:
    """What the build found out about one model (for the CLI's report)."""

    name: str
    kind: str  # "artifact" or "in-place"
    config: str  # "generated", "supplied <file>", or "in place"
    source: str = ""
    sha256: str = ""
    size: int = 0
    transferred: int = 0
    graph: str = ""  # "checked", or why it was not
    note: str = ""  # a modified cache entry that was evicted and fetched again


@dataclass(frozen=True)
class BuildResult:
    """The outcome: the lock (None without artifact models), and what was published where.

    ``snapshot``/``local_snapshot`` are None for a dry run; ``*_created`` is False when an
    identical snapshot already existed (nothing was written).
    """

    experiment: str
    deployment: str
    source: Path
    models: tuple[ModelReport, ...]
    in_place: tuple[InPlaceStatus, ...]
    lock: Lock | None
    lock_file: Path
    lock_status: str  # written, unchanged, removed, none, dry run
    snapshot: Path | None = None
    snapshot_created: bool = False
    copied: int = 0
    local_snapshot: Path | None = None
    local_created: bool = False
    local_skipped: tuple[tuple[str, str], ...] = ()
    cleaned: int = 0


@dataclass(frozen=True)
class _Prepared:
    """A model with an artifact whose config passed its own checks, waiting for its bytes."""

    model: Model
    config: mc.ModelConfig = field(repr=False)
    config_text: str
    where: Where  # where the config is written (deployment or supplied file)
    decl: InDeployment  # where the model is declared
    origin: str
    filename: str
    source: Source


def select_placements(deployment: Deployment, sites: Sequence[str]) -> list[Placement]:
    """The placements to build for; UsageError for a site the deployment does not run at."""
    placed = [p.site for p in deployment.placements]
    if not placed:
        raise UsageError(f"deployment {deployment.name!r} runs at no site")
    unknown = [s for s in sites if s not in placed]
    if unknown:
        raise UsageError(
            f"deployment {deployment.ref} does not run at site {unknown[0]!r} "
            f"(it runs at: {', '.join(placed)})"
        )
    return [p for p in deployment.placements if not sites or p.site in sites]


def _explicit_keys(tree: Tree, deployment: Deployment, index: int) -> frozenset[str]:
    doc = tree.documents.get(deployment.source)
    try:
        entry = doc.data["models"][index] if doc is not None else None
    except (KeyError, IndexError, TypeError):
        entry = None
    return frozenset(entry) if isinstance(entry, dict) else frozenset({"platform", "maxBatchSize"})


def _config_for(
    m: Model, decl: InDeployment, explicit: frozenset[str], base: Path, root: Path, errors: list[ConfigError]
) -> tuple[mc.ModelConfig, str, Where, str] | None:
    """The model's config: the supplied file (parsed, compared with the declaration) or a generated one."""
    if m.config_file is None:
        cfg = pbtxt.generate(m)
        return cfg, pbtxt.to_text(cfg), decl, "generated"
    path = (base / m.config_file).resolve()
    if not path.is_relative_to(root.resolve()):
        errors.append(
            decl.error("config_file", f"configFile {m.config_file!r} points outside the repository")
        )
        return None
    display = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(decl.error("config_file", f"cannot read configFile {m.config_file!r}: {exc}"))
        return None
    try:
        cfg = pbtxt.parse(text, display)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
        return None
    errors.extend(compare_declared(m, explicit, cfg, decl, display))
    if cfg.version_policy.HasField("specific"):
        listed = sorted(cfg.version_policy.specific.versions)
        if listed != sorted(m.versions):
            errors.append(
                decl.error(
                    "versions",
                    f"declared versions {sorted(m.versions)} but {display} serves versions {listed}",
                )
            )
    return cfg, text, InConfigFile(display, text, m.name), f"supplied {display}"


def _filename(m: Model, cfg: mc.ModelConfig, decl: InDeployment, errors: list[ConfigError]) -> str | None:
    """The artifact's file name in each version directory, consistent with what Triton will look for."""
    assert m.artifact is not None
    platform = pbtxt.platform_of(cfg)
    if platform == "tensorflow_savedmodel":
        errors.append(
            decl.error(
                "artifact",
                "a TensorFlow SavedModel is a directory, an artifact is one file: serve it from an in-place repository",
            )
        )
        return None
    default = pbtxt.DEFAULT_FILENAMES.get(platform)
    configured = cfg.default_model_filename or default
    if m.artifact.filename and configured and m.artifact.filename != configured:
        errors.append(
            decl.error(
                "filename",
                f"artifact.filename is {m.artifact.filename!r} but Triton will look for {configured!r} "
                "(default_model_filename or the platform's default)",
            )
        )
        return None
    name = m.artifact.filename or configured
    if not name:
        errors.append(
            decl.error(
                "filename", f"cannot tell the file name for backend {platform!r}: set artifact.filename"
            )
        )
    return name


def build(
    tree: Tree, deployment: Deployment, options: BuildOptions, observer: Observer | None = None
) -> BuildResult:
    """Build (or, with ``dry_run``, only check) the model repository of ``deployment``.

    Raises ConfigErrors listing every problem (nothing is published then), UsageError for a bad
    request, and OSError for an unusable destination.
    """
    observer = observer or Quiet()
    placements = select_placements(deployment, options.sites)
    options = _site_limits(options, placements, tree)
    first = deployment.placements[0]  # models are deployment-wide: the same at every site
    display = display_path(deployment.source)
    base = deployment.source.parent
    doc = tree.documents.get(deployment.source)
    strict = any(p.triton.server.strict_model_config for p in placements)
    targets = placements_of(placements, tree.sites)
    errors: list[ConfigError] = []
    prepared: list[_Prepared] = []
    in_place: list[InPlaceModel] = []
    reports: dict[str, ModelReport] = {}

    observer.stage("check")
    for i, m in enumerate(first.models):
        explicit = _explicit_keys(tree, deployment, i)
        decl = InDeployment(doc, display, i, m.name)
        if m.artifact is None and m.config_file is None:
            in_place.append(InPlaceModel(m, explicit, decl))
            reports[m.name] = ModelReport(m.name, "in-place", "in place")
            continue
        made = _config_for(m, decl, explicit, base, tree.root, errors)
        if made is None:
            continue
        cfg, text, where, origin = made
        if m.artifact is None:  # a supplied config for an in-place model: checked, not published
            in_place.append(InPlaceModel(m, explicit, decl))
            reports[m.name] = ModelReport(m.name, "in-place", origin)
            continue
        errors.extend(check_config(cfg, where, targets, strict=strict))
        filename = _filename(m, cfg, decl, errors)
        try:
            source = resolve(m.artifact.source, base, base)  # only the experiment's own files
        except FetchError as exc:
            errors.append(decl.error("artifact", f"artifact {m.artifact.source!r}: {exc}"))
            continue
        if filename is not None:
            prepared.append(_Prepared(m, cfg, text, where, decl, origin, filename, source))

    statuses, errs = verify_in_place(first, in_place, options.cvmfs_root)
    errors.extend(errs)

    try:
        with store_lock(options.dest, options.lock_timeout):
            return _build_locked(deployment, first, prepared, reports, statuses, errors, options, observer)
    except StoreBusy as exc:
        raise UsageError(str(exc)) from None


def _site_limits(options: BuildOptions, placements: Sequence[Placement], tree: Tree) -> BuildOptions:
    """No artifact above the smallest ``storage.maxArtifactSize`` of the sites built for."""
    caps = [tree.sites[p.site].storage.max_artifact_size for p in placements if p.site in tree.sites]
    if not caps or min(caps) >= options.policy.max_size:
        return options
    return dataclasses.replace(options, policy=dataclasses.replace(options.policy, max_size=min(caps)))


def _build_locked(
    deployment: Deployment,
    first: Placement,
    prepared: Sequence[_Prepared],
    reports: dict[str, ModelReport],
    statuses: Sequence[InPlaceStatus],
    errors: list[ConfigError],
    options: BuildOptions,
    observer: Observer,
) -> BuildResult:
    """Steps 2-4, holding the store's build lock (the cache and snapshots are shared state)."""
    cleaned = clean_partial(options.dest) + clean_partial(local.local_store(options.dest))
    cache = Cache(options.dest / "cache")
    cache.prepare()
    stat_cache = StatCache(cache.root / "stat-cache.json")
    observer.stage("fetch")
    try:
        fetched = _fetch_all(prepared, cache, stat_cache, options, observer)
    finally:
        stat_cache.save()
        cache.save()

    observer.stage("graph")
    repo_models: list[layout.RepoModel] = []
    for pr, got in zip(prepared, fetched, strict=True):
        assert pr.model.artifact is not None
        if isinstance(got, FetchError):
            errors.append(pr.decl.error("artifact", f"artifact {pr.model.artifact.source!r}: {got}"))
            continue
        graph = "not an ONNX model: no graph check"
        if pbtxt.platform_of(pr.config) == "onnxruntime_onnx":
            try:
                g = read_graph(got.path)
            except OnnxError as exc:
                errors.append(pr.decl.error("artifact", f"artifact {pr.model.artifact.source!r}: {exc}"))
                continue
            errors.extend(check_graph(pr.config, g, pr.where, pr.model.artifact.source))
            graph = "checked"
        reports[pr.model.name] = ModelReport(
            pr.model.name,
            "artifact",
            pr.origin,
            pr.model.artifact.source,
            got.sha256,
            got.size,
            got.transferred,
            graph,
            got.note,
        )
        repo_models.append(
            layout.RepoModel(
                name=pr.model.name,
                platform=pbtxt.platform_of(pr.config),
                versions=pr.model.versions,
                filename=pr.filename,
                config_text=pr.config_text,
                config=pr.config,
                artifact=got.path,
                sha256=got.sha256,
                size=got.size,
                source=pr.model.artifact.source,
            )
        )
    if errors:
        raise ConfigErrors(errors)

    lock = layout.make_lock(deployment.experiment, deployment.name, repo_models) if repo_models else None
    result = BuildResult(
        experiment=deployment.experiment,
        deployment=deployment.name,
        source=deployment.source,
        models=tuple(reports[m.name] for m in first.models if m.name in reports),
        in_place=tuple(statuses),
        lock=lock,
        lock_file=lock_path(deployment.source, deployment.name),
        lock_status="dry run" if options.dry_run else "none",
        cleaned=cleaned,
    )
    if options.dry_run:
        _verify_published(result, repo_models, options, observer)
        return result
    try:
        return _publish(result, repo_models, cache, options, observer)
    finally:
        cache.save()


def _fetch_all(
    prepared: Sequence[_Prepared],
    cache: Cache,
    stat_cache: StatCache,
    options: BuildOptions,
    observer: Observer,
) -> list[Fetched | FetchError]:
    """Fetch every artifact, in parallel, each distinct (source, sha256) once; errors are returned, not raised."""
    jobs: dict[tuple[str, str], _Prepared] = {}
    for pr in prepared:
        assert pr.model.artifact is not None
        jobs.setdefault((pr.source.url, pr.model.artifact.sha256), pr)

    def run(pr: _Prepared) -> Fetched | FetchError:
        assert pr.model.artifact is not None
        art = pr.model.artifact
        try:
            return fetch(
                pr.source,
                art.sha256,
                art.size,
                cache,
                stat_cache,
                options.policy,
                observer,
                f"fetch:{pr.model.name}",
                verify_only=options.dry_run,
                rehash_cached=options.dry_run,  # a dry run publishes nothing that would re-hash them
            )
        except FetchError as exc:
            return exc
        except OSError as exc:
            return FetchError(f"{exc.strerror or exc} ({exc.filename or pr.source.url})")

    with ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="fetch") as pool:
        done = dict(zip(jobs, pool.map(run, jobs.values()), strict=True))
    out: list[Fetched | FetchError] = []
    for pr in prepared:
        assert pr.model.artifact is not None
        out.append(done[(pr.source.url, pr.model.artifact.sha256)])
    return out


def _verify_published(
    result: BuildResult, models: Sequence[layout.RepoModel], options: BuildOptions, observer: Observer
) -> None:
    """A dry run's check of the snapshots a real build would reuse: SnapshotError if one was modified."""
    if result.lock is None:
        return
    memo = HashMemo()
    stores = [(options.dest, result.lock.snapshot, layout.entries(models))]
    if options.local:
        plan = local.plan(models)
        stores.append((local.local_store(options.dest), plan.digest, list(plan.entries)))
    for store, digest, entries in stores:
        path = snapshot_dir(store, digest)
        if not path.is_dir():
            continue
        observer.stage("verify", digest)
        problems, _ = verify_snapshot(
            path, entries, workers=options.workers, chunk=options.policy.chunk, memo=memo
        )
        if problems:
            raise SnapshotError(modified_message(path, problems), path, problems)


def _publish(
    result: BuildResult,
    models: Sequence[layout.RepoModel],
    cache: Cache,
    options: BuildOptions,
    observer: Observer,
) -> BuildResult:
    lock = result.lock
    if lock is None:
        removed = remove_lock(result.source, result.deployment)
        return _replace(result, lock_status="removed" if removed else "none")
    memo = HashMemo()  # the main and the local snapshot link the same artifacts: hash each once

    def put(store: Path, digest: str, entries: Sequence[Entry]) -> Published:
        try:
            published = publish(
                store, digest, entries, observer, options.policy.chunk, workers=options.workers, memo=memo
            )
        except SnapshotError as exc:
            _evict_modified(cache, exc, entries)
            raise
        for e in entries:  # the snapshot's links changed the cached files' ctime: they were just re-hashed
            if e.source is not None and e.relpath in published.verified:
                cache.remember(e.source, published.verified[e.relpath], e.sha256)
        return published

    snap = put(options.dest, lock.snapshot, layout.entries(models))
    changes: dict[str, object] = {
        "snapshot": snap.path,
        "snapshot_created": snap.created,
        "copied": snap.copied,
    }
    if options.local:
        plan = local.plan(models)
        loc = put(local.local_store(options.dest), plan.digest, plan.entries)
        changes.update(local_snapshot=loc.path, local_created=loc.created, local_skipped=plan.skipped)
    observer.stage("lock", str(result.lock_file))
    changes["lock_status"] = "written" if write_lock(result.source, lock) else "unchanged"
    return _replace(result, **changes)


def _evict_modified(cache: Cache, exc: SnapshotError, entries: Sequence[Entry]) -> None:
    """Drop the cache entries that share an inode with a modified snapshot file (they changed too)."""
    by_path = {e.relpath: e for e in entries}
    for m in exc.mismatches:
        e = by_path.get(m.path)
        if e is None or e.source is None:
            continue
        try:
            shared = os.path.samefile(exc.path / m.path, e.source) if exc.existing else True
        except OSError:
            shared = not exc.existing
        if shared:
            cache.evict(e.sha256)


def _replace(result: BuildResult, **changes: object) -> BuildResult:
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]
