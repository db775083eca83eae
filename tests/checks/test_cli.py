"""``sonic check`` as a user meets it: usage errors exit 2, a dead endpoint exits 1 with a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.local.processes import free_port


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["check", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "127.0.0.1:1", "nope"], "'nope' is not a deployment"),
        (["--endpoint", "127.0.0.1", "minimal"], "expected HOST:PORT"),
        (["--endpoint", "127.0.0.1:1", "minimal", "--site", "geddes"], "not placed at site 'geddes'"),
        (["--endpoint", "127.0.0.1:1", "minimal", "--token-file", "/nonexistent/token"], "--token-file"),
        (
            ["--endpoint", "127.0.0.1:1", "minimal", "--prometheus", "http://127.0.0.1:1", "--no-prometheus"],
            "give --prometheus or --no-prometheus, not both",
        ),
    ],
)
def test_usage_errors_exit_2(fixture_root: Path, args: list[str], message: str) -> None:
    code, _, err = run(*args, "--root", str(fixture_root))
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_unreachable_endpoint_fails_fast_as_json(fixture_root: Path) -> None:
    port, prom = free_port(), free_port()
    code, out, _ = run(
        "--endpoint",
        f"127.0.0.1:{port}",
        "cms/minimal",
        "--root",
        str(fixture_root),
        "--prometheus",
        f"http://127.0.0.1:{prom}",
        "--format",
        "json",
        "--timeout",
        "20",
    )
    assert code == 1
    report = json.loads(out)
    by_name = {(c["check"], c["target"]): c for c in report["checks"]}
    assert report["passed"] is False
    assert by_name[("server.live", "")]["status"] == "fail"
    assert "UNAVAILABLE" in by_name[("server.live", "")]["detail"]
    # Everything that needs the server is skipped with the reason, not failed in a cascade.
    assert by_name[("model.ready", "btag_mini")]["status"] == "skip"
    assert by_name[("latency.slo", "btag_mini")]["status"] == "skip"
    # Prometheus is independent of the server: unreachable means "metric unavailable", no crash.
    assert by_name[("metrics.load", "")]["status"] == "fail"
    assert by_name[("metrics.load", "")]["detail"].startswith("metric unavailable")
