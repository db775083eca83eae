"""Start and stop a real Triton server on this machine, on 127.0.0.1, serving a model repository.

The server is the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel (Triton 2.51,
CPU, Python backend only: serve the ``--local`` snapshot of ``sonic build-models``). What this
module takes care of, so callers do not have to:

* a backend directory of our own holding the Python backend and the stub built for *this*
  interpreter's version (the wheel does not install the stub where Triton looks);
* an environment where the stub embeds this interpreter's libpython (``LD_LIBRARY_PATH`` =
  its ``LIBDIR``) and imports this venv's packages (its ``bin`` first on ``PATH``);
* loopback-only endpoints on free ports (retried if another process grabs a port first),
  ``--model-control-mode none`` (every model loads at start, a broken one stops the server);
* a new process group, so :func:`stop_triton` reaches the backend stubs too, and a unique
  shared-memory prefix, so only *this* server's ``/dev/shm`` regions are removed afterwards.

Example::

    with running_triton([snapshot]) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_address)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipelines.local.processes import free_ports

SHM_DIR = Path("/dev/shm")
# Starts like the Python backend's default prefix, so generic leftover sweeps still match it.
SHM_PREFIX = "triton_python_backend_shm_region_sonic_"
STARTUP_TIMEOUT = 60.0


# Log lines worth showing when the server fails, and the CPU-only noise that is not the reason.
_REASONS = ("failed to load", "UNAVAILABLE", "error:")
_HARMLESS = ("CudaDriverHelper", "NVML", "CUDA", "pinned memory", "DCGM")


class TritonError(RuntimeError):
    """Triton is not installed, or did not become ready; the message includes its log's last lines."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of the bundled Triton are."""

    binary: Path
    python_backend: Path  # libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for this interpreter's version
    libs: Path  # the wheel's shared libraries, found by RPATH only from their original place


@dataclass
class TritonServer:
    """A running server: its process (leader of its own process group), ports and log."""

    popen: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path
    shm_prefix: str
    workdir: Path

    @property
    def grpc_address(self) -> str:
        """For ``tritonclient.grpc.InferenceServerClient``."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self, lines: int = 20) -> str:
        """The log's last lines, preceded by the lines that say why a model did not load."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        why = [
            line
            for line in text
            if any(w in line for w in _REASONS) and not any(h in line for h in _HARMLESS)
        ]
        return "\n".join(dict.fromkeys([*why, *text[-lines:]]))


def find_install() -> TritonInstall:
    """Locate the Triton bundled in nvidia-pytriton; TritonError when it (or a matching stub) is missing."""
    try:
        import pytriton
    except ImportError:
        raise TritonError(
            "Triton is not installed: pip install 'sonic-gitops[local]' (nvidia-pytriton)"
        ) from None
    base = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=base / "bin" / "tritonserver",
        python_backend=base / "backends" / "python",
        stub=base / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=base.parent.parent / "nvidia_pytriton.libs",
    )
    for what, path in (
        ("server", install.binary),
        ("Python backend", install.python_backend),
        ("stub", install.stub),
    ):
        if not path.exists():
            raise TritonError(f"the bundled Triton has no {what} for Python {version} at {path}")
    return install


def prepare_backends(workdir: Path, install: TritonInstall) -> Path:
    """A backend directory under ``workdir`` with the Python backend and this interpreter's stub."""
    target = workdir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(install.python_backend / name, target / name)
    shutil.copy2(install.stub, target / "triton_python_backend_stub")
    os.chmod(target / "triton_python_backend_stub", 0o755)
    return target.parent


def triton_env(install: TritonInstall, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the Python backend stub needs: this interpreter's libpython and packages.

    The copied stub no longer finds the wheel's libraries through its RPATH, hence ``install.libs``.
    """
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    bindir = str(Path(sys.executable).parent)
    paths = (libdir, str(install.libs), env.get("LD_LIBRARY_PATH", ""))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH", "")) if p)
    return env


def command(
    install: TritonInstall,
    repositories: Sequence[Path],
    backends: Path,
    ports: tuple[int, int, int],
    shm_prefix: str,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``tritonserver`` command line (HTTP, gRPC, metrics ports in that order)."""
    return [
        *_this_machine(install, repositories, backends, ports),
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--disable-auto-complete-config",  # serve config.pbtxt exactly as built
        "--exit-timeout-secs=2",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        *extra_args,
    ]


def _this_machine(
    install: TritonInstall, repositories: Sequence[Path], backends: Path, ports: tuple[int, int, int]
) -> list[str]:
    """The binary, repositories, backend directory and loopback endpoints of a server here."""
    http, grpc, metrics = ports
    return [
        str(install.binary),
        *(f"--model-repository={r}" for r in repositories),
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
    ]


# What differs between the cluster's ``tritonserver`` command line and one on this machine: the
# model repositories (the local snapshot), where it listens, and the backend directory.
_MACHINE_FLAGS = ("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port=")


def cluster_command(
    install: TritonInstall,
    cluster_args: Sequence[str],
    repositories: Sequence[Path],
    backends: Path,
    ports: tuple[int, int, int],
    shm_prefix: str,
    substitutions: Mapping[str, str],
) -> list[str]:
    """The cluster's ``tritonserver`` arguments, run here (HTTP, gRPC, metrics ports in that order).

    ``cluster_args`` is what the rendered Deployment runs (``pipelines.render.triton.triton_args``):
    strict model configuration, model control mode, backend configurations, tracing and the
    restricted protocols stay as the cluster has them. Only the repositories, ports and addresses
    (loopback) and the backend directory are this machine's, plus a shared-memory prefix of its
    own for the Python backend (several local servers share ``/dev/shm``). ``substitutions``
    replaces text the cluster leaves to the kubelet or the pod, e.g. ``$(SONIC_TRITON_ADMIN_KEY)``
    or the trace file under ``/tmp``.
    """
    kept = []
    for arg in cluster_args:
        if arg.startswith(_MACHINE_FLAGS):
            continue
        for old, new in substitutions.items():
            arg = arg.replace(old, new)
        kept.append(arg)
    return [
        *_this_machine(install, repositories, backends, ports),
        *kept,
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
    ]


def _ready(server: TritonServer) -> bool:
    try:
        return httpx.get(f"{server.http_url}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_triton(
    repositories: Sequence[Path],
    workdir: Path,
    *,
    startup_timeout: float = STARTUP_TIMEOUT,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    attempts: int = 3,
) -> TritonServer:
    """Start Triton on ``repositories`` and wait until it is ready; the caller must :func:`stop_triton` it.

    ``workdir`` receives the backend directory and ``triton.log``. Raises TritonError (with the
    log's tail) when the server exits or is not ready within ``startup_timeout`` seconds.
    """
    install = find_install()
    workdir.mkdir(parents=True, exist_ok=True)
    backends = prepare_backends(workdir, install)
    log = workdir / "triton.log"
    last = ""
    for _ in range(attempts):
        ports = free_ports(3)
        prefix = f"{SHM_PREFIX}{uuid.uuid4().hex[:12]}_"
        argv = command(
            install,
            [r.resolve() for r in repositories],
            backends,
            (ports[0], ports[1], ports[2]),
            prefix,
            extra_args,
        )
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=triton_env(install, env),
                start_new_session=True,  # own process group: stop_triton signals the stubs too
            )
        server = TritonServer(popen, ports[0], ports[1], ports[2], log, prefix, workdir)
        try:
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline and popen.poll() is None and not _ready(server):
                time.sleep(0.1)
            if popen.poll() is None and _ready(server):
                return server
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            stop_triton(server)
            raise
        last = server.log_tail()
        stop_triton(server)
        if "already in use" not in last and "Address in use" not in last:
            break  # not a port race: retrying would fail the same way
    raise TritonError(
        f"Triton did not become ready on {', '.join(map(str, repositories))}; log ({log}):\n{last}"
    )


def stop_triton(server: TritonServer, grace: float = 10.0) -> None:
    """Stop the server's process group (SIGTERM, then SIGKILL after ``grace`` s) and remove its shm regions."""
    pgid = server.popen.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        server.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        server.popen.wait(timeout=10)
    # Stubs outliving the server (they exit on their own when it goes): the group is ours alone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for region in SHM_DIR.glob(f"{server.shm_prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            region.unlink()


@contextlib.contextmanager
def running_triton(
    repositories: Sequence[Path],
    workdir: Path | None = None,
    *,
    startup_timeout: float = STARTUP_TIMEOUT,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[TritonServer]:
    """:func:`start_triton` ... :func:`stop_triton` as a context manager; a temporary ``workdir`` by default."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sonic-triton-")))
        server = start_triton(
            repositories, workdir, startup_timeout=startup_timeout, extra_args=extra_args, env=env
        )
        try:
            yield server
        finally:
            stop_triton(server)
