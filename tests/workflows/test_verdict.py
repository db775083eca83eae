"""``sonic pipelines verdict``: the last task of pr-validation fails unless every check passed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipelines.cli import cli


def verdict(*results: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["pipelines", "verdict", *results])
    return result.exit_code, result.output


def test_every_check_passed_or_skipped() -> None:
    code, output = verdict("owners-check=Succeeded", "validate=Skipped", "render-check=Succeeded")
    assert code == 0 and "all 3 checks passed" in output


@pytest.mark.parametrize("phase", ["Failed", "Error", "Omitted", ""])
def test_any_other_phase_fails_and_is_named(phase: str) -> None:
    code, output = verdict("owners-check=Succeeded", f"render-check={phase}", "verify-rendered=Succeeded")
    assert code == 1
    assert "1 check(s) did not pass: render-check" in output


def test_a_malformed_result_is_a_usage_error() -> None:
    code, output = verdict("render-check")
    assert code == 2 and "expected CHECK=PHASE" in output
