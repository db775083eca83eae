"""``sonic local up|status|down`` as a user runs it (real processes, real servers), and teardown
on every way out: ``down``, Ctrl-C while attached, Ctrl-C while starting, a start that fails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.config import load_tree
from pipelines.config.names import TRITON_ADMIN_ENV
from pipelines.local import stack
from pipelines.local.processes import group_members
from pipelines.local.state import StackState
from pipelines.local.triton import SHM_DIR
from pipelines.render.triton import triton_args

pytestmark = pytest.mark.integration

SONIC = [sys.executable, "-c", "from pipelines.cli import main; main()"]
RUN_DIR = Path(".sonic") / "run" / "cms-minimal"


@pytest.fixture
def tree(tmp_path: Path, fixture_root: Path) -> Iterator[Path]:
    """A private copy of the fixture tree; any stack left behind by a failing test is stopped."""
    root = tmp_path / "repo"
    shutil.copytree(
        fixture_root / "experiments", root / "experiments", ignore=shutil.ignore_patterns("locks")
    )
    shutil.copytree(fixture_root / "gitops" / "sites", root / "gitops" / "sites")
    yield root
    if (root / RUN_DIR / "state.json").exists():
        sonic("local", "down", "minimal", "--root", str(root), timeout=60)


def loosen_latency_slo(root: Path) -> None:
    """Latency bounds no healthy loopback stack can miss, however busy the machine.

    The load probe still runs (4 clients x 200 requests) and its errors still fail it; only its
    latency verdict no longer depends on speed. tests/checks/test_live.py shows an SLO that
    cannot be met fails.
    """
    path = root / "experiments" / "cms" / "minimal.yaml"
    data = yaml.safe_load(path.read_text())
    data["checks"]["latencySLO"] = {"p50": "10s", "p99": "30s", "concurrency": 4, "requests": 200}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def sonic(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # wide tables: no phrase split over two lines
    return subprocess.run(
        [*SONIC, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def state_of(root: Path) -> StackState:
    path = root / RUN_DIR / "state.json"
    return StackState.from_json(path.read_text(), path)


def assert_all_gone(state: StackState) -> None:
    for proc in state.processes:
        assert not proc.alive(), f"{proc.name} (pid {proc.pid}) still runs"
        assert group_members(proc.pid) == [], f"{proc.name}'s process group still has members"
    for prefix in state.shm_prefixes:
        assert list(SHM_DIR.glob(f"{prefix}*")) == [], "shared memory left in /dev/shm"


def cluster_server_settings(root: Path) -> None:
    """Server settings the cluster's command line carries and a local run used to drop."""
    path = root / "experiments" / "cms" / "minimal.yaml"
    data = yaml.safe_load(path.read_text())
    data["triton"]["server"].update(
        modelControlMode="explicit", backendConfig={"onnxruntime": {"enable-global-threadpool": "1"}}
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_up_status_check_down(tree: Path) -> None:
    root = str(tree)
    loosen_latency_slo(tree)
    cluster_server_settings(tree)
    up = sonic("local", "up", "minimal", "--replicas", "1", "--root", root)
    assert up.returncode == 0, up.stderr
    state = state_of(tree)
    assert [p.name for p in state.processes][:2] == ["triton-0", "envoy"]
    # The local Triton runs the cluster's command line; only repositories, ports, addresses, the
    # backend directory, the admin key the kubelet would expand and the shm prefix are this machine's.
    argv = Path(f"/proc/{state.process('triton-0').pid}/cmdline").read_bytes().decode().split("\0")[1:-1]
    placement = load_tree(tree).deployment("cms/minimal").placements[0]
    machine = ("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port=")
    for arg in triton_args(placement, []):
        if not arg.startswith(machine) and TRITON_ADMIN_ENV not in arg:
            assert arg in argv, f"{arg} is missing from the local Triton's command line {argv}"
    assert "--model-control-mode=explicit" in argv and "--load-model=btag_mini" in argv
    assert not any("$(" in arg for arg in argv)
    assert "check it:  sonic check --endpoint 127.0.0.1:" in up.stdout
    # Everything listens on loopback only, each log is in the run directory.
    assert all(Path(p.log).parent.is_relative_to(state.run_dir) for p in state.processes)
    assert "listen_address" not in (state.run_dir / "envoy.yaml").read_text()
    assert "0.0.0.0" not in (state.run_dir / "envoy.yaml").read_text()

    again = sonic("local", "up", "minimal", "--root", root)
    assert again.returncode == 2 and "already running" in again.stderr

    status = sonic("local", "status", "minimal", "--root", root, "--format", "json")
    assert status.returncode == 0, status.stderr
    components = {c["name"]: c for c in json.loads(status.stdout)["components"]}
    assert components["envoy"]["running"] and "1/1 Triton upstreams healthy" in components["envoy"]["detail"]

    check_args = ["check", "--endpoint", state.endpoint, "cms/minimal", "--root", root, "--format", "json"]
    if state.prometheus_url:
        check_args += ["--prometheus", state.prometheus_url]
    check = sonic(*check_args)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["passed"] is True
    [probe] = [c for c in report["checks"] if c["check"] == "latency.slo"]
    assert probe["status"] == "pass"
    assert (probe["data"]["requests"], probe["data"]["errors"]) == (200, 0)

    down = sonic("local", "down", "minimal", "--root", root)
    assert down.returncode == 0, down.stderr
    assert_all_gone(state)
    assert not (state.run_dir / "state.json").exists()
    assert (state.run_dir / "envoy.log").exists()  # logs stay for post-mortems
    again = sonic("local", "down", "minimal", "--root", root)
    assert again.returncode == 0 and "nothing to stop" in again.stdout


def test_up_without_prometheus_prints_a_check_that_asks_no_prometheus(tree: Path) -> None:
    """The printed command must not fall back to the site's (a cluster's) Prometheus."""
    root = str(tree)
    loosen_latency_slo(tree)
    up = sonic("local", "up", "minimal", "--replicas", "1", "--no-prometheus", "--root", root)
    assert up.returncode == 0, up.stderr
    state = state_of(tree)
    try:
        (line,) = [line for line in up.stdout.splitlines() if line.startswith("check it:")]
        assert line.split() == [
            "check", "it:", "sonic", "check", "--endpoint", state.endpoint, "cms/minimal", "--no-prometheus",
            "--root", root,
        ]  # fmt: skip
        check = sonic(*line.split()[3:], "--format", "json")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "asking the site's Prometheus" not in check.stderr
        report = json.loads(check.stdout)
        assert report["passed"] is True
        load = next(c for c in report["checks"] if c["check"] == "metrics.load")  # the admission gate's query
        assert load["status"] == "skip" and "no Prometheus URL given" in load["detail"], load
    finally:
        assert sonic("local", "down", "minimal", "--root", root).returncode == 0
    assert_all_gone(state)


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """Read the process's output until a line contains ``needle``."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen in:\n{''.join(seen)}")


def start_attached(tree: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SONIC, "local", "up", "minimal", "--replicas", "1", "--no-prometheus", "--root", str(tree), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=default_sigint,
    )


def default_sigint() -> None:
    """Give the child the default SIGINT disposition, whatever the test runner inherited.

    A process started in the background by a non-interactive shell has SIGINT ignored, exec keeps
    an ignored disposition, and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests
    would measure the runner's environment instead of ``sonic``.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_the_foreground_stops_everything(tree: Path) -> None:
    proc = start_attached(tree, "--foreground")
    try:
        wait_for_line(proc, "running in the foreground", timeout=120)
        state = state_of(tree)
        assert all(p.alive() for p in state.processes)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_all_gone(state)
    assert not (tree / RUN_DIR / "state.json").exists()


def test_ctrl_c_while_starting_leaves_nothing_running(tree: Path) -> None:
    proc = start_attached(tree)
    try:
        wait_for_line(proc, "starting 1 Triton replica", timeout=60)
        # Interrupt as soon as the server process exists: it needs seconds to load its model,
        # so it is surely not ready yet (a finished start would exit 0, asserted below).
        give_up = time.monotonic() + 60
        while not (tritons := tritons_of(tree)) and proc.poll() is None and time.monotonic() < give_up:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert tritons, "the Triton process had not started when Ctrl-C was sent"
    assert code != 0  # click reports the interruption as "Aborted!" with exit code 1
    assert tritons_of(tree) == []
    assert not (tree / RUN_DIR / "state.json").exists()


def test_a_server_that_fails_to_start_is_named_with_its_log_and_nothing_stays(tree: Path) -> None:
    """A model that cannot load makes Triton exit: the error names it and shows the log's end."""
    loaded = load_tree(tree)
    p = loaded.deployment("cms/minimal").placements[0]
    built = stack.build_local_snapshot(loaded, p, tree / ".sonic" / "models")
    broken = tree / "broken-repository"
    shutil.copytree(built.repository, broken)
    (broken / "btag_mini" / "1" / "model.onnx").write_bytes(b"this is not an ONNX model")
    with pytest.raises(stack.StackError) as info:
        stack.up(loaded, p, root=tree, replicas=2, repository=broken, with_prometheus=False, timeout=60)
    message = str(info.value)
    assert message.startswith("Triton did not become ready: triton-")
    assert "exited before it was ready" in message
    assert "failed to load all models" in message  # the end of its log
    assert tritons_of(tree) == []  # the other replica was stopped too
    assert not (tree / RUN_DIR / "state.json").exists()


def tritons_of(tree: Path) -> list[int]:
    """PIDs of live tritonserver processes serving a repository under ``tree``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if args and args[0].endswith(b"tritonserver") and any(str(tree).encode() in a for a in args):
            pids.append(int(entry.name))
    return pids


def test_demo_runs_the_whole_chain_and_says_what_it_skipped(tree: Path) -> None:
    loosen_latency_slo(tree)
    result = sonic("demo", "--root", str(tree), "--no-prometheus", "--replicas", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    out = result.stdout
    for step in ("1. validate", "2. build", "3. render", "4. local up", "5. check", "6. report", "7. down"):
        assert step in out
    assert "gitops/rendered/uchicago/cms/minimal/configmap.yaml" in out
    assert "skipped: prometheus: turned off" in out
    assert "no Prometheus URL given" in out  # the metrics check says why it did not run
    assert "PASSED: " in out and "demo PASSED" in out
    [probe] = [line for line in out.splitlines() if "latency.slo" in line]
    assert "PASS" in probe and "200 requests at concurrency 4" in probe and " 0 errors" in probe
    assert tritons_of(tree) == []
    assert not (tree / RUN_DIR / "state.json").exists()
