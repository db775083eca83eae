"""The pull-request comment: per-site changes read from git, failures from Argo, deterministic."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.ops.github import COMMENT_MARKER
from pipelines.ops.pr_summary import (
    FileChange,
    by_site,
    comment_body,
    parse_failures,
    parse_name_status,
)
from tests.ops.conftest import OWNER_REPO, Origin
from tests.ops.fakes import Request, Response, github_comment, serve_github

NAME_STATUS = """\
M\tgitops/rendered/uchicago/cms/minimal/deployment.yaml
A\tgitops/rendered/uchicago/cms/minimal/scaledobject.yaml
D\tgitops/rendered/nautilus/atlas/traccc/ingress.yaml
M\tgitops/argocd/uchicago/applicationset.yaml
X\tweird
"""


def test_name_status_grouped_per_site_and_deployment() -> None:
    changes = parse_name_status(NAME_STATUS)
    assert len(changes) == 4
    assert by_site(changes) == {
        "nautilus": {
            "atlas/traccc": [FileChange("removed", "gitops/rendered/nautilus/atlas/traccc/ingress.yaml")]
        },
        "uchicago": {
            "cms/minimal": [
                FileChange("modified", "gitops/rendered/uchicago/cms/minimal/deployment.yaml"),
                FileChange("added", "gitops/rendered/uchicago/cms/minimal/scaledobject.yaml"),
            ]
        },
    }


def test_failures_from_argo() -> None:
    text = '[{"displayName":"validate","message":"Error (exit code 1)","templateName":"validate","phase":"Failed"}]'
    (f,) = parse_failures(text)
    assert (f.step, f.message) == ("validate", "Error (exit code 1)")
    assert parse_failures("") == parse_failures("null") == parse_failures("{{workflow.failures}}") == []


def test_comment_reads_like_a_review() -> None:
    body = comment_body(
        outcome="Succeeded",
        head="3f5c2a9d8e7b6a5c4d3e",
        changes=parse_name_status(NAME_STATUS),
        workflow="pr-validation-x7k2p",
        link="https://argo.example.org/workflows/sonic-pipelines/pr-validation-x7k2p",
    )
    assert body.startswith(COMMENT_MARKER + "\n### SONIC GitOps: ✅ validation passed\n")
    assert (
        "[pr-validation-x7k2p](https://argo.example.org/workflows/sonic-pipelines/pr-validation-x7k2p)"
        in body
    )
    assert "site <b>nautilus</b>: 1 deployment" in body and "site <b>uchicago</b>: 1 deployment" in body
    assert "| `cms/minimal` | changed: ~ `deployment.yaml`, + `scaledobject.yaml` |" in body
    assert "| `atlas/traccc` | removed: - `ingress.yaml` |" in body
    assert "- ~ `gitops/argocd/uchicago/applicationset.yaml`" in body
    assert body.index("nautilus") < body.index("uchicago")  # sites in a stable order
    again = comment_body(outcome="Succeeded", head="3f5c2a9d8e7b6a5c4d3e", changes=parse_name_status(NAME_STATUS),
                         workflow="pr-validation-x7k2p", link="https://argo.example.org/workflows/sonic-pipelines/pr-validation-x7k2p")  # fmt: skip
    assert again == body


def test_comment_without_relevant_changes() -> None:
    body = comment_body(outcome="Succeeded", head="abc", changes=[], relevant=False)
    assert "nothing to validate" in body and "What changes" not in body


def test_cli_comment_summarises_a_real_checkout(origin: Origin, tmp_path: Path) -> None:
    """The exit handler's comment step on a real checkout of a pull request with rendered changes."""
    rendered = "gitops/rendered/uchicago/cms/minimal/deployment.yaml"
    (origin.work / rendered).parent.mkdir(parents=True)
    (origin.work / rendered).write_text("replicas: 2\n")
    origin.commit_all("rendered")
    origin.push("refs/heads/main")
    sha = origin.pull_request(9, "pr", {rendered: "replicas: 3\n"}, "3 replicas")
    dest = tmp_path / "src"
    co = CliRunner().invoke(
        cli,
        ["github", "checkout", "--repository", OWNER_REPO, "--server", origin.server, "--pr", "9", "--ref", sha,
         "--base-ref", "main", "--dest", str(dest)],
    )  # fmt: skip
    assert co.exit_code == 0, co.output
    token = tmp_path / "token"
    token.write_text("t0ken")
    posted: list[Request] = []

    def github(req: Request) -> Response:
        posted.append(req)
        if req.method == "GET":
            return Response(200, [])
        return Response(201, github_comment(1, req.json()["body"], "sonic-bot", OWNER_REPO, 9))

    with serve_github(github) as server:
        result = CliRunner().invoke(
            cli,
            ["github", "comment", "--repository", OWNER_REPO, "--pr", "9", "--workflow-status", "Succeeded",
             "--checkout", str(dest), "--base-ref", "main", "--relevant", "experiments/", "--relevant", "gitops/",
             "--skip-if-irrelevant", "--api-url", server.url, "--token-file", str(token)],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = posted[-1].json()["body"]
    assert f"Commit `{sha[:12]}`" in body
    assert "| `cms/minimal` | changed: ~ `deployment.yaml` |" in body


def test_cli_stays_silent_on_irrelevant_pull_requests(origin: Origin, tmp_path: Path) -> None:
    sha = origin.pull_request(3, "docs", {"NOTES.md": "n\n"}, "docs")
    dest = tmp_path / "src"
    args = ["--repository", OWNER_REPO, "--pr", "3"]
    assert (
        CliRunner()
        .invoke(
            cli,
            [
                "github",
                "checkout",
                *args,
                "--server",
                origin.server,
                "--ref",
                sha,
                "--base-ref",
                "main",
                "--dest",
                str(dest),
            ],
        )
        .exit_code
        == 0
    )
    token = tmp_path / "token"
    token.write_text("t0ken")
    with serve_github(lambda r: Response(200, [])) as server:
        result = CliRunner().invoke(
            cli,
            ["github", "comment", *args, "--workflow-status", "Succeeded", "--checkout", str(dest), "--base-ref", "main",
             "--relevant", "experiments/", "--skip-if-irrelevant", "--api-url", server.url, "--token-file", str(token)],
        )  # fmt: skip
        methods = [r.method for r in server.requests]
    assert result.exit_code == 0, result.output
    assert methods == ["GET"] and "not commenting" in result.output


def test_cli_explains_a_failed_run_on_an_irrelevant_pull_request(origin: Origin, tmp_path: Path) -> None:
    """The render check runs on every pull request (issue 10.11); when it fails on one that touches
    no configuration (a hand edit of gitops/rendered/), the author gets the comment saying why."""
    sha = origin.pull_request(4, "hand-edit", {"NOTES.md": "n\n"}, "hand edit")
    dest = tmp_path / "src"
    args = ["--repository", OWNER_REPO, "--pr", "4"]
    checkout = CliRunner().invoke(
        cli, ["github", "checkout", *args, "--server", origin.server, "--ref", sha, "--base-ref", "main",
              "--dest", str(dest)],
    )  # fmt: skip
    assert checkout.exit_code == 0, checkout.output
    token = tmp_path / "token"
    token.write_text("t0ken")
    answers = iter(
        [Response(200, []), Response(201, github_comment(1, "summary", "sonic-bot", OWNER_REPO, 4))]
    )
    with serve_github(lambda r: next(answers)) as server:
        result = CliRunner().invoke(
            cli,
            ["github", "comment", *args, "--workflow-status", "Failed", "--checkout", str(dest), "--base-ref", "main",
             "--relevant", "experiments/", "--skip-if-irrelevant", "--api-url", server.url, "--token-file", str(token)],
        )  # fmt: skip
        methods = [r.method for r in server.requests]
    assert result.exit_code == 0, result.output
    assert methods == ["GET", "POST"]
