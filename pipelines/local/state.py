"""state.json: what ``sonic local up`` started, so that ``status`` and ``down`` (other processes,
later) can find every server, port, log and shared-memory region again."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config.model import Placement
from pipelines.local.processes import Proc

STATE_VERSION = 1
RUN_ROOT = Path(".sonic") / "run"


class StateError(RuntimeError):
    """No stack, or an unreadable state file (the message says which and where)."""


def run_dir(root: Path, p: Placement) -> Path:
    """``<root>/.sonic/run/<experiment>-<deployment>``: every file of one local stack."""
    return root / RUN_ROOT / f"{p.experiment}-{p.name}"


@dataclass(frozen=True)
class TritonPorts:
    name: str
    http: int
    grpc: int
    metrics: int

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics}"


@dataclass(frozen=True)
class StackState:
    """Everything one running local stack is made of."""

    deployment: str  # experiment/name
    site: str
    run_dir: Path
    started_at: float  # epoch seconds
    model_repository: Path
    tritons: tuple[TritonPorts, ...]
    envoy_port: int  # the client endpoint (gRPC)
    envoy_admin: int
    envoy_stats: int
    prometheus_port: int | None
    processes: tuple[Proc, ...]
    shm_prefixes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # what was left out and why
    jwt_local: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.envoy_port}"

    @property
    def prometheus_url(self) -> str | None:
        return f"http://127.0.0.1:{self.prometheus_port}" if self.prometheus_port else None

    def process(self, name: str) -> Proc:
        found = next((p for p in self.processes if p.name == name), None)
        if found is None:
            raise KeyError(f"no process {name!r} in this stack (have: {[p.name for p in self.processes]})")
        return found

    def to_json(self) -> str:
        body = {
            "version": STATE_VERSION,
            "deployment": self.deployment,
            "site": self.site,
            "run_dir": str(self.run_dir),
            "started_at": self.started_at,
            "model_repository": str(self.model_repository),
            "endpoint": self.endpoint,
            "tritons": [t.__dict__ for t in self.tritons],
            "envoy": {"grpc": self.envoy_port, "admin": self.envoy_admin, "stats": self.envoy_stats},
            "prometheus": self.prometheus_port,
            "processes": [p.as_dict() for p in self.processes],
            "shm_prefixes": list(self.shm_prefixes),
            "skipped": list(self.skipped),
            "jwt_local": self.jwt_local,
            "extra": self.extra,
        }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> StackState:
        try:
            d = json.loads(text)
            if d.get("version") != STATE_VERSION:
                raise StateError(f"{where}: state version {d.get('version')!r}, expected {STATE_VERSION}")
            return cls(
                deployment=d["deployment"],
                site=d["site"],
                run_dir=Path(d["run_dir"]),
                started_at=float(d["started_at"]),
                model_repository=Path(d["model_repository"]),
                tritons=tuple(TritonPorts(**t) for t in d["tritons"]),
                envoy_port=int(d["envoy"]["grpc"]),
                envoy_admin=int(d["envoy"]["admin"]),
                envoy_stats=int(d["envoy"]["stats"]),
                prometheus_port=d["prometheus"],
                processes=tuple(Proc.from_dict(p) for p in d["processes"]),
                shm_prefixes=tuple(d.get("shm_prefixes", ())),
                skipped=tuple(d.get("skipped", ())),
                jwt_local=bool(d.get("jwt_local", False)),
                extra=dict(d.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{where}: unreadable state file ({type(exc).__name__}: {exc})") from None


def state_path(directory: Path) -> Path:
    return directory / "state.json"


def save(state: StackState) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path = state_path(state.run_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(state.to_json(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load(directory: Path) -> StackState:
    path = state_path(directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"no local stack in {directory} (start one with `sonic local up`)") from None
    return StackState.from_json(text, path)
