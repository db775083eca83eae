"""Start, find and stop the local stack's server processes, each in its own process group.

A server started here runs in a new session (so a Ctrl-C in the terminal reaches only the CLI,
which then tears everything down in order) with its output in a log file. A process is
identified by PID *and* start time, so a PID recycled by the kernel is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class StartError(RuntimeError):
    """A server did not become ready in time; the message names it, the reason and its log."""


@dataclass(frozen=True)
class Proc:
    """A started server: enough to find it again from another process (state.json)."""

    name: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a recycled PID apart
    log: str
    command: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Proc:
        return cls(str(d["name"]), int(d["pid"]), int(d["start_ticks"]), str(d["log"]), tuple(d["command"]))

    def alive(self) -> bool:
        """Running (not a zombie) and still the process we started."""
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of ``pid``, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all sockets held open together, so none is picked twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def start(
    name: str,
    command: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``command`` in a new session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    stat = _stat(popen.pid)
    # The Popen object is dropped on purpose: the server outlives this CLI call ("local up").
    # Children are reaped by `stop` (ours) or by init (after the CLI exits).
    _CHILDREN[popen.pid] = popen
    return Proc(name, popen.pid, stat[1] if stat else 0, str(log), tuple(command))


# Popen objects of servers started by this process: kept so `stop` can reap them (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def stop(proc: Proc, *, grace: float = 8.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; never raises."""
    if not proc.alive():
        _reap(proc.pid)
        return
    _signal_group(proc.pid, signal.SIGTERM)
    give_up = time.monotonic() + grace
    while time.monotonic() < give_up:
        _reap(proc.pid)
        if not proc.alive():
            break
        time.sleep(0.05)
    else:
        _signal_group(proc.pid, signal.SIGKILL)
        _reap(proc.pid, wait=2.0)
    # Stragglers (a backend stub) left in the group after the leader exited. While any member
    # lives, the group ID cannot be reused, so this never reaches someone else's processes.
    if group_members(proc.pid):
        _signal_group(proc.pid, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """PIDs of live processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def kill(proc: Proc) -> None:
    """SIGKILL the whole group at once (a crash, as the failure tests need)."""
    if proc.alive():
        _signal_group(proc.pid, signal.SIGKILL)
        _reap(proc.pid, wait=2.0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int, wait: float = 0.0) -> None:
    child = _CHILDREN.get(pid)
    if child is None:
        return
    try:
        child.wait(timeout=wait if wait > 0 else 0.001)
    except subprocess.TimeoutExpired:
        return
    _CHILDREN.pop(pid, None)


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    procs: Sequence[Proc] = (),
    interval: float = 0.1,
) -> None:
    """Poll ``ready()`` until true; raise StartError after ``timeout`` or as soon as a process dies."""
    give_up = time.monotonic() + timeout
    last = ""
    while True:
        try:
            if ready():
                return
        except Exception as exc:  # connection refused and the like: not up yet
            last = f" (last attempt: {type(exc).__name__}: {exc})"
        for p in procs:
            if not p.alive():
                raise StartError(
                    f"{p.name} exited before it was ready (waiting for: {what}); last lines of {p.log}:\n{p.log_tail()}"
                )
        if time.monotonic() >= give_up:
            logs = "".join(f"\n--- {p.name} ({p.log}):\n{p.log_tail()}" for p in procs)
            raise StartError(f"{what}: not ready after {timeout:g}s{last}{logs}")
        time.sleep(interval)
