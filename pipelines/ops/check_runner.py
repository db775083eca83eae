"""Run ``sonic check`` exactly as a person would, and keep its JSON report.

The rollout needs the report after the check step ends (to fail with it after reverting) and
the scheduled validation pushes it to a Pushgateway; both wrap the real command instead of
re-implementing it, so a check behaves the same everywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The same CLI, in this interpreter: works in a virtualenv whose bin/ is not on PATH.
SONIC = (sys.executable, "-c", "from pipelines.cli import main; main()")


@dataclass(frozen=True)
class CheckRun:
    exit_code: int
    stdout: str
    stderr: str
    started_at: float
    duration: float

    @property
    def report(self) -> dict[str, Any] | None:
        """The parsed ``--format json`` report, or None when the check wrote none (it crashed)."""
        try:
            data = json.loads(self.stdout)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None


def check_command(
    deployment: str | None, endpoint: str, token_file: Path | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """The argument list of ``sonic check`` (without the program); no DEPLOYMENT when ``extra``
    names the deployment another way (``--spec``, ``--rendered``)."""
    args = ["check", "--endpoint", endpoint, "--format", "json"]
    if token_file is not None:
        args += ["--token-file", str(token_file)]
    return [*args, *extra, *([deployment] if deployment is not None else [])]


def run_check(
    deployment: str | None,
    endpoint: str,
    *,
    token_file: Path | None = None,
    extra: Sequence[str] = (),
    timeout: float = 900.0,
    cwd: Path | None = None,
) -> CheckRun:
    """Run the check to completion (bounded by ``timeout``); never raises for a failing check."""
    started = time.time()
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [*SONIC, *check_command(deployment, endpoint, token_file, extra)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return CheckRun(
            2, out, f"sonic check did not finish within {timeout:.0f}s", started, time.monotonic() - t0
        )
    return CheckRun(proc.returncode, proc.stdout, proc.stderr, started, time.monotonic() - t0)
