"""Prometheus on this machine with the RENDERED scrape jobs and rules, static loopback targets.

The target labels (``namespace``, ``service``) are the ones the renderer sets, so the load
query KEDA and the admission gate use (pipelines.render.metrics) works here unchanged. The
scrape interval is shortened for the local stack (a rate() needs two samples in its window).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from pipelines.config.model import Placement
from pipelines.local.processes import Proc, start, wait_until
from pipelines.render.monitoring import prometheus_rule_groups, prometheus_scrape_config

START_TIMEOUT = 30.0
LOCAL_SCRAPE_INTERVAL = 2.0  # seconds
CANDIDATES = ("/usr/bin/prometheus", "/usr/local/bin/prometheus")


def prometheus_binary() -> Path | None:
    """The installed Prometheus server, or None (the local stack then runs without it)."""
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    return next((Path(c) for c in CANDIDATES if Path(c).exists()), None)


def config(
    p: Placement,
    *,
    triton_targets: Sequence[str],
    envoy_targets: Sequence[str],
    rules_file: str,
    scrape_interval: float = LOCAL_SCRAPE_INTERVAL,
) -> dict[str, Any]:
    """prometheus.yml: the rendered jobs with static targets, the rendered rules file."""
    interval = f"{scrape_interval:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [rules_file],
        "scrape_configs": prometheus_scrape_config(
            p,
            triton_targets=list(triton_targets),
            envoy_targets=list(envoy_targets),
            scrape_interval=scrape_interval,
        ),
    }


def write_files(
    p: Placement,
    run_dir: Path,
    *,
    triton_targets: Sequence[str],
    envoy_targets: Sequence[str],
    scrape_interval: float = LOCAL_SCRAPE_INTERVAL,
) -> Path:
    """Write prometheus.yml and rules.yml into ``run_dir``; returns the config path."""
    rules = run_dir / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule_groups(p)}, sort_keys=False), encoding="utf-8")
    path = run_dir / "prometheus.yml"
    body = config(
        p,
        triton_targets=triton_targets,
        envoy_targets=envoy_targets,
        rules_file=str(rules),
        scrape_interval=scrape_interval,
    )
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def start_prometheus(binary: Path, config_path: Path, data_dir: Path, log: Path, *, port: int) -> Proc:
    """Start Prometheus bound to 127.0.0.1 only, its TSDB in ``data_dir`` (never the system's)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(binary),
        f"--config.file={config_path}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=2h",
        "--log.level=warn",
    ]
    return start("prometheus", command, log)


def ready(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1.0).status_code == 200


def targets_up(port: int) -> dict[str, str]:
    """``{scrape URL: "up" | "down" | "unknown"}`` for every active target."""
    resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets?state=active", timeout=2.0)
    resp.raise_for_status()
    return {t["scrapeUrl"]: t["health"] for t in resp.json()["data"]["activeTargets"]}


def wait_ready(proc: Proc, port: int, targets: int, timeout: float = START_TIMEOUT) -> None:
    """Until Prometheus answers and has scraped each of its ``targets`` successfully once."""
    wait_until(f"prometheus 127.0.0.1:{port}/-/ready", lambda: ready(port), timeout=timeout, procs=[proc])

    def scraped() -> bool:
        health = targets_up(port)
        return len(health) == targets and all(h == "up" for h in health.values())

    wait_until(f"prometheus: all {targets} targets scraped", scraped, timeout=timeout, procs=[proc])
