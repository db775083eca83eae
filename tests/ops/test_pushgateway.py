"""Scheduled-check results pushed to a Pushgateway: the exact exposition text and request."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.ops.pushgateway import (
    CONTENT_TYPE,
    Metric,
    PushError,
    Sample,
    check_metrics,
    exposition,
    group_path,
    push,
)
from tests.conftest import FIXTURE
from tests.ops.fakes import Response, serve

REPORT = {
    "deployment": "cms/minimal",
    "site": "uchicago",
    "endpoint": "minimal-envoy.cms-af.svc:8001",
    "passed": False,
    "counts": {"pass": 2, "fail": 1, "skip": 1},
    "checks": [
        {"check": "server.live", "target": "", "status": "pass", "detail": "", "seconds": 0.01, "data": {}},
        {
            "check": "model.infer",
            "target": "btag_mini",
            "status": "pass",
            "detail": "",
            "seconds": 0.25,
            "data": {},
        },
        {
            "check": "latency.slo",
            "target": "btag_mini",
            "status": "fail",
            "detail": "p99 130 ms",
            "seconds": 2.5,
            "data": {},
        },
        {
            "check": "auth.token",
            "target": "",
            "status": "skip",
            "detail": "no JWT",
            "seconds": 0.0,
            "data": {},
        },
    ],
}

EXPECTED = """\
# HELP sonic_check_success 1 when every check of the deployment passed, else 0.
# TYPE sonic_check_success gauge
sonic_check_success 0
# HELP sonic_check_exit_code Exit code of sonic check (0 passed, 1 a check failed, 2 could not run).
# TYPE sonic_check_exit_code gauge
sonic_check_exit_code 1
# HELP sonic_check_last_run_timestamp_seconds When the scheduled check finished (Unix time).
# TYPE sonic_check_last_run_timestamp_seconds gauge
sonic_check_last_run_timestamp_seconds 1767225600.5
# HELP sonic_check_duration_seconds How long the whole check run took.
# TYPE sonic_check_duration_seconds gauge
sonic_check_duration_seconds 3.25
# HELP sonic_check_passed 1 when this check passed, 0 when it failed.
# TYPE sonic_check_passed gauge
sonic_check_passed{check="server.live",target=""} 1
sonic_check_passed{check="model.infer",target="btag_mini"} 1
sonic_check_passed{check="latency.slo",target="btag_mini"} 0
# HELP sonic_check_seconds Time one check took.
# TYPE sonic_check_seconds gauge
sonic_check_seconds{check="server.live",target=""} 0.01
sonic_check_seconds{check="model.infer",target="btag_mini"} 0.25
sonic_check_seconds{check="latency.slo",target="btag_mini"} 2.5
"""


def test_exposition_of_a_failed_check() -> None:
    assert exposition(check_metrics(REPORT, 1, 1767225600.5, 3.25)) == EXPECTED


def test_a_check_that_wrote_no_report_still_reports_failure() -> None:
    text = exposition(check_metrics(None, 2, 1767225600.0, 0.5))
    assert "sonic_check_success 0\n" in text and "sonic_check_exit_code 2\n" in text
    assert "sonic_check_passed" not in text


def test_label_values_are_escaped() -> None:
    metric = Metric("m", "help with \\ and\nnewline", (Sample("m", 1.0, (("l", 'a"b\\c\nd'),)),))
    assert (
        exposition([metric])
        == '# HELP m help with \\\\ and\\nnewline\n# TYPE m gauge\nm{l="a\\"b\\\\c\\nd"} 1\n'
    )


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_promtool_accepts_the_exposition() -> None:
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=EXPECTED,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # promtool lints naming conventions too; anything it prints is a problem worth failing on.
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )


def test_grouping_key_path() -> None:
    grouping = [("site", "uchicago"), ("experiment", "cms"), ("deployment", "minimal")]
    assert group_path("sonic_scheduled_validation", grouping) == (
        "/metrics/job/sonic_scheduled_validation/site/uchicago/experiment/cms/deployment/minimal"
    )
    # Values a path segment cannot carry use the base64 form the Pushgateway defines.
    assert (
        group_path("j", [("path", "a/b"), ("empty", "")]) == "/metrics/job/j/path@base64/YS9i/empty@base64/="
    )
    with pytest.raises(ValueError, match="label name"):
        group_path("j", [("bad-name", "x")])


def test_push_replaces_the_group_with_a_put() -> None:
    with serve(lambda r: Response(200, "")) as server:
        push(
            server.url,
            "sonic_scheduled_validation",
            [("site", "uchicago"), ("deployment", "minimal")],
            EXPECTED,
        )
        (req,) = server.requests
    assert req.method == "PUT"
    assert req.path == "/metrics/job/sonic_scheduled_validation/site/uchicago/deployment/minimal"
    assert req.headers["content-type"] == CONTENT_TYPE
    assert req.body.decode() == EXPECTED


def test_push_errors_say_whether_to_retry() -> None:
    with (
        serve(lambda r: Response(400, "text format parsing error in line 3")) as server,
        pytest.raises(PushError, match="line 3") as info,
    ):
        push(server.url, "j", [], "bad")
    assert not info.value.transient
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(PushError) as info:
        push(closed, "j", [], "x 1\n", timeout=2)
    assert info.value.transient


def test_cli_runs_the_real_check_and_pushes_its_result() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"  # nothing answers: the check fails
    with serve(lambda r: Response(200, "")) as server:
        result = CliRunner().invoke(
            cli,
            ["pushgateway", "check", "cms/minimal", "--url", server.url, "--site", "uchicago",
             "--endpoint", endpoint, "--prometheus", f"http://{endpoint}", "--timeout", "60"],
        )  # fmt: skip
        requests = server.requests
    assert result.exit_code == 1, result.output  # the check's own exit code
    (req,) = requests
    assert (
        req.path == "/metrics/job/sonic_scheduled_validation/site/uchicago/experiment/cms/deployment/minimal"
    )
    body = req.body.decode()
    assert "sonic_check_success 0\n" in body and "sonic_check_exit_code 1\n" in body
    assert 'sonic_check_passed{check="server.live",target=""} 0' in body


def test_cli_checks_a_rendered_directory_and_labels_even_a_run_without_report(tmp_path: Path) -> None:
    """The scheduled check's form: the deployment from its GitOps branch directory (issue 10.14)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"
    rendered = "gitops/rendered/uchicago/cms/minimal"
    with serve(lambda r: Response(200, "")) as server:
        result = CliRunner().invoke(
            cli,
            ["pushgateway", "check", "--rendered", str(FIXTURE / rendered), "--url", server.url,
             "--endpoint", endpoint, "--timeout", "30"],
        )  # fmt: skip
        gone = CliRunner().invoke(
            cli,
            ["pushgateway", "check", "--rendered", str(tmp_path / "gitops/rendered/geddes/cms/gone"),
             "--url", server.url, "--endpoint", endpoint, "--timeout", "30"],
        )  # fmt: skip
        paths = [r.path for r in server.requests]
    assert result.exit_code == 1, result.output
    assert gone.exit_code == 1, gone.output  # never rolled out: a failed check, pushed as one
    assert paths == [
        "/metrics/job/sonic_scheduled_validation/site/uchicago/experiment/cms/deployment/minimal",
        "/metrics/job/sonic_scheduled_validation/site/geddes/experiment/cms/deployment/gone",
    ]
    neither = CliRunner().invoke(cli, ["pushgateway", "check", "--url", "http://x", "--endpoint", endpoint])
    assert neither.exit_code == 2 and "DEPLOYMENT or --rendered" in neither.output


def test_cli_push_of_a_saved_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({**REPORT, "passed": True, "checks": REPORT["checks"][:2]}))
    with serve(lambda r: Response(202, "")) as server:
        result = CliRunner().invoke(
            cli,
            [
                "pushgateway",
                "push",
                str(report),
                "--url",
                server.url,
                "--exit-code",
                "0",
                "--duration",
                "1.5",
            ],
        )
        (req,) = server.requests
    assert result.exit_code == 0, result.output
    assert req.path.endswith("/site/uchicago/experiment/cms/deployment/minimal")
    assert "sonic_check_success 1\n" in req.body.decode()
