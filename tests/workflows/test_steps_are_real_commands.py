"""Every step's ``sonic ...`` command exists in the CLI, with options the command really has.

Parsed with click's own parser on the real command tree, so a renamed option or subcommand
fails here rather than in a pod. Commands owned by other parts of the project that may still be
on their way are listed in PENDING; a pending command only has its name checked against
PENDING (today every command exists, so the list is empty).
"""

from __future__ import annotations

import shlex
from typing import Any

import click
import pytest
import yaml

from pipelines.cli import cli
from tests.workflows.support import containers, missing_arguments, parse, repo_file, resolve

# (subcommand words) of commands other helpers are still writing; empty when all exist.
PENDING: frozenset[tuple[str, ...]] = frozenset()


def check_command(args: list[str], where: str) -> click.Command | None:
    try:
        cmd, path, rest = resolve(cli, args)
    except LookupError:
        if tuple(args[:2]) in PENDING or tuple(args[:1]) in PENDING:
            return None
        raise
    try:
        values, extra = parse(cmd, rest)
    except click.UsageError as exc:
        raise AssertionError(f"{where}: `sonic {' '.join(path)}`: {exc.format_message()}") from exc
    assert not extra, f"{where}: `sonic {' '.join(path)}` takes no further arguments: {extra}"
    missing = missing_arguments(cmd, values)
    assert not missing, f"{where}: `sonic {' '.join(path)}` misses its argument(s) {missing}"
    return cmd


@pytest.mark.parametrize(
    ("ident", "container"),
    [(ident, c) for ident, _, c in containers()],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_every_step_runs_a_real_subcommand(ident: str, container: dict[str, Any]) -> None:
    assert container["command"] == ["sonic"]
    check_command(container["args"], ident)


def test_the_checker_catches_a_wrong_option_and_a_wrong_command() -> None:
    with pytest.raises(AssertionError, match="No such option"):
        check_command(["github", "status", "--repo", "a/b"], "negative control")
    with pytest.raises(AssertionError, match="misses its argument"):
        check_command(["build-models", "--dry-run"], "negative control")
    with pytest.raises(AssertionError, match="no further arguments"):
        check_command(["render", "stray"], "negative control")
    with pytest.raises(LookupError, match="is not a command"):
        check_command(["github", "statuses"], "negative control")


def run_lines(text: str) -> list[list[str]]:
    """``sonic ...`` invocations in shell snippets (continuation lines joined, ``&&``/``;`` split)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        segment: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word in ("&&", "||", ";", "|"):
                if segment and segment[0].endswith("sonic"):
                    out.append(segment[1:])
                segment = []
            else:
                segment.append(word)
    return out


def test_github_actions_run_real_subcommands() -> None:
    seen = 0
    for path in sorted(repo_file(".github/workflows").glob("*.yaml")):
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                for args in run_lines(step.get("run", "")):
                    # ${{ ... }} expressions are values GitHub fills in; they parse as ordinary words.
                    check_command(args, f"{path.name}: {step.get('name')}")
                    seen += 1
    assert seen >= 4


def test_dockerfile_smoke_test_runs_a_real_subcommand() -> None:
    text = repo_file("Dockerfile").read_text()
    runs = [
        a
        for a in run_lines(text.replace("RUN ", "\n").replace(">/dev/null", ""))
        if a and a[0] != "--version"
    ]
    assert runs, "the Dockerfile should smoke-test the installed CLI"
    for args in runs:
        check_command(args, "Dockerfile")
