"""The local stack: N Triton replicas, Envoy and (when installed) Prometheus, for one deployment.

``up`` builds the ``--local`` model snapshot, starts the servers on free 127.0.0.1 ports,
waits until each is ready (Envoy: every Triton upstream healthy; Prometheus: every target
scraped) and records everything in ``<run dir>/state.json``. Any failure or Ctrl-C while
starting tears down what was already started. ``down`` stops Envoy first (no new work), then
the Tritons, then Prometheus, and removes the Tritons' shared-memory regions.

Envoy and Prometheus run the *rendered* configuration (``pipelines.render``), with only the
addresses changed: the point is to exercise what the cluster will run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from pipelines.config.model import Placement, Site
from pipelines.config.names import TRITON_ADMIN_ENV, TRITON_TRACE_FILE
from pipelines.config.tree import Tree
from pipelines.local import envoy as local_envoy
from pipelines.local import prometheus as local_prometheus
from pipelines.local.processes import Proc, StartError, free_ports, kill, start, stop, wait_until
from pipelines.local.state import StackState, StateError, TritonPorts, load, run_dir, save, state_path
from pipelines.local.triton import (
    SHM_DIR,
    SHM_PREFIX,
    cluster_command,
    find_install,
    prepare_backends,
    triton_env,
)
from pipelines.render.envoy.k8s import envoy_workers
from pipelines.render.triton import triton_args

ADMIN_KEY_FILE = "triton-admin.key"  # the local stand-in for the namespace's Secret

Say = Callable[[str], None]
START_TIMEOUT = 120.0


class StackError(RuntimeError):
    """The stack could not start (the message names the component, the reason and its log)."""


class AlreadyRunning(StackError):
    """A stack for this deployment is already up."""


@dataclass(frozen=True)
class Built:
    """The model repository the local Tritons serve, and the models it cannot serve here."""

    repository: Path
    skipped: tuple[tuple[str, str], ...] = ()


def build_local_snapshot(tree: Tree, p: Placement, dest: Path) -> Built:
    """``sonic build-models --local``: verify the artifacts and publish the CPU variant.

    Every file of both snapshots is re-hashed before it is published or reused, so a snapshot
    modified after publication is refused here (StackError) and never served.
    """
    from pipelines.modelrepo.build import BuildOptions, build
    from pipelines.modelrepo.snapshot import SnapshotError

    deployment = tree.deployment(p.ref)
    try:
        result = build(tree, deployment, BuildOptions(dest=dest, local=True, sites=(p.site,)))
    except SnapshotError as exc:
        raise StackError(f"{p.ref}: not served: {exc}") from None
    if result.local_snapshot is None:
        raise StackError(
            f"{p.ref}: nothing to serve locally (no model with an artifact; models read "
            "in place from CVMFS/NFS cannot run on this machine)"
        )
    return Built(result.local_snapshot, tuple(result.local_skipped))


def _quiet(_: str) -> None:
    pass


def default_replicas(p: Placement) -> int:
    """Triton replicas started locally: the fixed count, or autoscaling's min (nothing scales here); at least one."""
    return max(1, p.autoscaling.min if p.autoscaling is not None else p.replicas)


def up(
    tree: Tree,
    p: Placement,
    *,
    root: Path,
    replicas: int | None = None,
    repository: Path | None = None,
    with_prometheus: bool = True,
    jwks: str | None = None,
    timeout: float = START_TIMEOUT,
    say: Say = _quiet,
) -> StackState:
    """Start the whole stack for ``p``; returns its state (also saved as state.json).

    Args:
        repository: serve this model repository instead of building the ``--local`` snapshot.
        with_prometheus: start Prometheus if installed (False: never).
        jwks: a JWKS document replacing the deployment's remote key set (JWT deployments).
        timeout: readiness bound of each component, seconds.

    Raises StackError (AlreadyRunning when a stack for ``p`` runs), TritonError (not
    installed), EnvoyMissing; on any exception, including KeyboardInterrupt, nothing is left
    running.
    """
    directory = run_dir(root, p)
    _refuse_if_running(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    n = replicas if replicas is not None else default_replicas(p)
    site = tree.sites[p.site]
    skipped: list[str] = []
    started: list[Proc] = []
    prefixes: list[str] = []
    start_time = time.time()
    try:
        if repository is None:
            say("building the --local model snapshot (sonic build-models --local)")
            built = build_local_snapshot(tree, p, root / ".sonic" / "models")
            repository = built.repository
            skipped += [f"model {m}: {why}" for m, why in built.skipped]
        say(f"starting {n} Triton replica(s) on {repository}")
        tritons = _start_tritons(p, repository, directory, n, timeout, started, prefixes)

        envoy_port, admin, stats, prom_port = free_ports(4)
        prom_bin = local_prometheus.prometheus_binary() if with_prometheus else None
        if prom_bin is None:
            why = "not installed (apt-get install prometheus)" if with_prometheus else "turned off"
            skipped.append(
                f"prometheus: {why}; the metrics checks are skipped and the admission gate cannot read the "
                f"load (onPrometheusError: {_gate_policy(p)})"
            )
        say(f"starting Envoy on 127.0.0.1:{envoy_port} with the rendered configuration")
        _start_envoy(p, site, directory, tritons, envoy_port, admin, stats, prom_port, jwks, timeout, started)

        prometheus_port: int | None = None
        if prom_bin is not None:
            say(f"starting Prometheus on 127.0.0.1:{prom_port} with the rendered scrape jobs and rules")
            _start_prometheus(p, prom_bin, directory, tritons, stats, prom_port, timeout, started)
            prometheus_port = prom_port
        state = StackState(
            deployment=p.ref,
            site=p.site,
            run_dir=directory,
            started_at=start_time,
            model_repository=repository,
            tritons=tritons,
            envoy_port=envoy_port,
            envoy_admin=admin,
            envoy_stats=stats,
            prometheus_port=prometheus_port,
            processes=tuple(started),
            shm_prefixes=tuple(prefixes),
            skipped=tuple(skipped),
            jwt_local=jwks is not None,
        )
        save(state)
        return state
    except BaseException:
        _teardown(started, prefixes)
        raise


def _gate_policy(p: Placement) -> str:
    gate = p.envoy.admission_gate
    return gate.on_prometheus_error if gate is not None and gate.enabled else "no gate"


def _refuse_if_running(directory: Path) -> None:
    if not state_path(directory).exists():
        return
    try:
        old = load(directory)
    except StateError:
        return  # unreadable: nothing we could stop; start afresh
    if any(proc.alive() for proc in old.processes):
        raise AlreadyRunning(
            f"a local stack for {old.deployment} is already running (endpoint {old.endpoint}); "
            f"stop it first: sonic local down {old.deployment}"
        )


def _start_tritons(
    p: Placement,
    repository: Path,
    directory: Path,
    n: int,
    timeout: float,
    started: list[Proc],
    prefixes: list[str],
) -> tuple[TritonPorts, ...]:
    """Spawn ``n`` replicas at once, record each immediately, then wait for all in this thread.

    Built from pipelines.local.triton's pieces (backend directory, environment, command line)
    rather than its blocking ``start_triton``, so that a Ctrl-C during the wait reaches this
    thread and every spawned server is already known to the teardown.
    """
    install = find_install()
    tritons = []
    for i in range(n):
        name = f"triton-{i}"
        workdir = directory / name
        backends = prepare_backends(workdir, install)
        http, grpc, metrics = free_ports(3)
        prefix = f"{SHM_PREFIX}{uuid.uuid4().hex[:12]}_"
        prefixes.append(prefix)
        argv = cluster_command(
            install,
            triton_args(p, []),
            [repository.resolve()],
            backends,
            (http, grpc, metrics),
            prefix,
            {f"$({TRITON_ADMIN_ENV})": _admin_key(directory), TRITON_TRACE_FILE: str(workdir / "trace.json")},
        )
        started.append(start(name, argv, workdir / "triton.log", env=triton_env(install)))
        tritons.append(TritonPorts(name, http, grpc, metrics))
    procs = list(started[-n:])

    def all_ready() -> bool:
        return all(
            httpx.get(f"http://127.0.0.1:{t.http}/v2/health/ready", timeout=1.0).status_code == 200
            for t in tritons
        )

    try:
        wait_until(
            f"{n} Triton replica(s) ready (GET /v2/health/ready)", all_ready, timeout=timeout, procs=procs
        )
    except StartError as exc:
        raise StackError(f"Triton did not become ready: {exc}") from None
    return tuple(tritons)


def _admin_key(directory: Path) -> str:
    """The stack's Triton management key: made once per run directory, read by every Envoy after.

    The local stand-in for the namespace's Secret (docs/security.md); a file, so an Envoy started
    by a later command (``extra_envoy``) finds the same key.
    """
    path = directory / ADMIN_KEY_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(16))
    return path.read_text()


def _start_envoy(
    p: Placement,
    site: Site,
    directory: Path,
    tritons: tuple[TritonPorts, ...],
    port: int,
    admin: int,
    stats: int,
    prom_port: int,
    jwks: str | None,
    timeout: float,
    started: list[Proc],
    name: str = "envoy",
) -> Proc:
    config = local_envoy.local_config(
        p,
        site,
        endpoints=[("127.0.0.1", t.grpc) for t in tritons],
        listen_port=port,
        admin_port=admin,
        stats_port=stats,
        prometheus_url=f"http://127.0.0.1:{prom_port}",
        jwks=jwks,
    )
    try:
        # As many workers as the rendered Deployment gives Envoy.
        workers = envoy_workers(p)
        proc = local_envoy.run_config(
            config,
            directory,
            name,
            hosts=len(tritons),
            workers=workers,
            timeout=timeout,
            env={**os.environ, TRITON_ADMIN_ENV: _admin_key(directory)},
        )
    except StartError as exc:
        raise StackError(f"Envoy: {exc}") from None
    started.append(proc)
    return proc


@dataclass(frozen=True)
class ExtraEnvoy:
    """A second Envoy on a running stack's Tritons (another rendering of the same deployment)."""

    proc: Proc
    port: int
    admin: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def extra_envoy(
    state: StackState, p: Placement, site: Site, *, name: str, jwks: str | None = None
) -> Iterator[ExtraEnvoy]:
    """Run ``p``'s rendered Envoy (e.g. a variant with JWT or another gate threshold) in front of
    the stack's Tritons and Prometheus, for as long as the ``with`` block lasts."""
    port, admin, stats = free_ports(3)
    prom_port = state.prometheus_port or free_ports(1)[0]
    started: list[Proc] = []
    _start_envoy(
        p, site, state.run_dir, state.tritons, port, admin, stats, prom_port, jwks, 30.0, started, name
    )
    try:
        yield ExtraEnvoy(started[0], port, admin)
    finally:
        stop(started[0])


def _start_prometheus(
    p: Placement,
    binary: Path,
    directory: Path,
    tritons: tuple[TritonPorts, ...],
    envoy_stats: int,
    port: int,
    timeout: float,
    started: list[Proc],
) -> Proc:
    config = local_prometheus.write_files(
        p,
        directory,
        triton_targets=[t.metrics_address for t in tritons],
        envoy_targets=[f"127.0.0.1:{envoy_stats}"],
    )
    proc = local_prometheus.start_prometheus(
        binary, config, directory / "prometheus-data", directory / "prometheus.log", port=port
    )
    started.append(proc)
    try:
        local_prometheus.wait_ready(proc, port, len(tritons) + 1, timeout=timeout)
    except StartError as exc:
        raise StackError(f"Prometheus: {exc}") from None
    return proc


# Envoy first (stop taking new clients), then the servers behind it, then the monitoring.
_STOP_ORDER = {"envoy": 0, "prometheus": 2}


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Defer Ctrl-C and SIGTERM while tearing down, so a second Ctrl-C cannot leave servers behind."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be changed (and signals only arrive) in the main thread
        return
    pending: list[int] = []

    def remember(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            raise KeyboardInterrupt


def _teardown(procs: list[Proc] | tuple[Proc, ...], prefixes: list[str] | tuple[str, ...]) -> list[str]:
    with _shielded():
        return _stop_all(procs, prefixes)


def _stop_all(procs: list[Proc] | tuple[Proc, ...], prefixes: list[str] | tuple[str, ...]) -> list[str]:
    stopped = []
    for rank in sorted({_STOP_ORDER.get(proc.name, 1) for proc in procs}):
        group = [proc for proc in procs if _STOP_ORDER.get(proc.name, 1) == rank]
        was_alive = [proc.alive() for proc in group]
        # Replicas stop in parallel: Triton takes seconds to exit after SIGTERM.
        with ThreadPoolExecutor(max_workers=max(1, len(group)), thread_name_prefix="stop") as pool:
            list(pool.map(stop, group))
        for proc, alive in zip(group, was_alive, strict=True):
            stopped.append(f"{proc.name} (pid {proc.pid}){'' if alive else ' (had already exited)'}")
    for prefix in prefixes:
        for region in SHM_DIR.glob(f"{prefix}*"):
            with contextlib.suppress(FileNotFoundError):
                region.unlink()
    return stopped


def down(state: StackState) -> list[str]:
    """Stop every process of the stack and remove its shared memory, state file and scratch data.

    Logs and rendered configuration files stay in the run directory for post-mortems. Processes
    recorded in the saved state.json are stopped too (a component restarted since ``state``
    was taken, e.g. by :func:`restart_prometheus`).
    """
    procs = list(state.processes)
    prefixes = list(state.shm_prefixes)
    with contextlib.suppress(StateError):
        saved = load(state.run_dir)
        procs += [
            p
            for p in saved.processes
            if (p.pid, p.start_ticks) not in {(q.pid, q.start_ticks) for q in procs}
        ]
        prefixes += [x for x in saved.shm_prefixes if x not in prefixes]
    stopped = _teardown(procs, prefixes)
    for scratch in [state.run_dir / "prometheus-data", *(state.run_dir.glob("triton-*/backends"))]:
        shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        state_path(state.run_dir).unlink()
    return stopped


def find(root: Path, p: Placement) -> StackState:
    """The running (or crashed) stack of ``p``; StateError when there is none."""
    return load(run_dir(root, p))


@contextlib.contextmanager
def running(tree: Tree, p: Placement, *, root: Path, **kwargs: Any) -> Iterator[StackState]:
    """``up`` ... ``down``, for tests, the demo and the benchmark."""
    state = up(tree, p, root=root, **kwargs)
    try:
        yield state
    finally:
        down(state)


# --- status and fault injection --------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    detail: str


def status(state: StackState) -> list[ComponentStatus]:
    """Each process: running or not, plus what its own interface says (upstream health, targets)."""
    out = []
    triton_by_name = {t.name: t for t in state.tritons}
    health: dict[str, str] = {}
    with contextlib.suppress(Exception):
        health = local_envoy.upstream_health(state.envoy_admin)
    for proc in state.processes:
        alive = proc.alive()
        detail = "" if alive else f"not running; see {proc.log}"
        if alive and proc.name == "envoy":
            healthy = sum(1 for v in health.values() if v == "healthy")
            detail = (
                f"gRPC 127.0.0.1:{state.envoy_port}, {healthy}/{len(state.tritons)} Triton upstreams healthy"
            )
        elif alive and proc.name in triton_by_name:
            t = triton_by_name[proc.name]
            flag = health.get(t.grpc_address, "unknown")
            detail = f"gRPC {t.grpc_address}, metrics {t.metrics_address}; in Envoy: {flag}"
        elif alive and proc.name == "prometheus":
            try:
                targets = local_prometheus.targets_up(state.prometheus_port or 0)
                up_count = sum(1 for h in targets.values() if h == "up")
                detail = f"{state.prometheus_url}, {up_count}/{len(targets)} targets up"
            except Exception as exc:
                detail = f"{state.prometheus_url}, targets unknown ({type(exc).__name__})"
        out.append(ComponentStatus(proc.name, proc.pid, alive, detail))
    return out


def kill_triton(state: StackState, index: int) -> None:
    """SIGKILL one replica's whole process group: a crash, as the failure tests need."""
    kill(state.process(f"triton-{index}"))


def stop_prometheus(state: StackState) -> None:
    stop(state.process("prometheus"))


def restart_prometheus(state: StackState, p: Placement, timeout: float = 30.0) -> StackState:
    """Start Prometheus again on its port with the same files (its data survives); saves the state."""
    binary = local_prometheus.prometheus_binary()
    if binary is None or state.prometheus_port is None:
        raise StackError("this stack runs without Prometheus")
    started: list[Proc] = []
    _start_prometheus(
        p, binary, state.run_dir, state.tritons, state.envoy_stats, state.prometheus_port, timeout, started
    )
    procs = tuple(proc for proc in state.processes if proc.name != "prometheus") + tuple(started)
    new = replace(state, processes=procs)
    save(new)
    return new
