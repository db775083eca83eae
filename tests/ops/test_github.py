"""GitHub commit status and the bot's comment, against a local server asserting the exact requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.ops.github import COMMENT_MARKER, GitHub, GitHubError
from tests.ops.fakes import Request, Response, github_comment, github_error, github_status, serve_github

TOKEN = "ghs_testtoken0123456789"
SHA = "3f5c2a9d8e7b6a5c4d3e2f1a0b9c8d7e6f5a4b3c"
REPO = "fastml/sonic-gitops"


def assert_api_headers(req: Request) -> None:
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["accept"] == "application/vnd.github+json"
    assert req.headers["x-github-api-version"] == "2022-11-28"


def comment(id_: int, body: str, login: str = "sonic-bot") -> dict[str, Any]:
    return github_comment(id_, body, login, REPO)


def _page(req: Request) -> int:
    return int(parse_qs(urlsplit(req.path).query).get("page", ["1"])[0])


class FakeIssue:
    """Issue comments of pull request 7, paginated two per page like GitHub (Link headers)."""

    def __init__(self, comments: list[dict[str, Any]]):
        self.comments = comments

    def __call__(self, req: Request) -> Response:
        base = f"/repos/{REPO}/issues"
        if req.method == "GET" and req.path.startswith(f"{base}/7/comments"):
            page = _page(req)
            items = self.comments[(page - 1) * 2 : page * 2]
            headers = {}
            if page * 2 < len(self.comments):
                # GitHub's absolute next link (by repository id), as the real API sends it.
                headers["Link"] = (
                    f'<https://api.github.com/repositories/1/issues/7/comments?per_page=100&page={page + 1}>; rel="next"'
                )
            return Response(200, items, headers)
        if req.method == "GET" and req.path.startswith("/repositories/1/issues/7/comments"):
            page = _page(req)
            items = self.comments[(page - 1) * 2 : page * 2]
            return Response(200, items)
        if req.method == "POST" and req.path == f"{base}/7/comments":
            new = comment(100, req.json()["body"])
            self.comments.append(new)
            return Response(201, new)
        if req.method == "PATCH" and req.path.startswith(f"{base}/comments/"):
            cid = int(req.path.rsplit("/", 1)[1])
            for c in self.comments:
                if c["id"] == cid:
                    c["body"] = req.json()["body"]
                    return Response(200, c)
        return Response(404, github_error("Not Found"))


def test_status_posts_exactly_the_documented_request() -> None:
    with (
        serve_github(
            lambda r: Response(201, github_status(r.json()["state"], r.json()["context"]))
        ) as server,
        GitHub(TOKEN, server.url) as gh,
    ):
        gh.set_status(
            REPO,
            SHA,
            "success",
            context="sonic-gitops/pr-validation",
            description="ok",
            target_url="https://argo/wf",
        )
        (req,) = server.requests
    assert req.method == "POST"
    assert req.path == f"/repos/{REPO}/statuses/{SHA}"
    assert req.json() == {
        "state": "success",
        "context": "sonic-gitops/pr-validation",
        "description": "ok",
        "target_url": "https://argo/wf",
    }
    assert_api_headers(req)


def test_status_description_is_cut_to_githubs_limit() -> None:
    with (
        serve_github(
            lambda r: Response(201, github_status(r.json()["state"], r.json()["context"]))
        ) as server,
        GitHub(TOKEN, server.url) as gh,
    ):
        gh.set_status(REPO, SHA, "failure", context="c", description="x" * 500)
        body = server.requests[0].json()
    assert len(body["description"]) == 140 and "target_url" not in body


def test_status_rejects_bad_input_before_sending() -> None:
    with (
        serve_github(
            lambda r: Response(201, github_status(r.json()["state"], r.json()["context"]))
        ) as server,
        GitHub(TOKEN, server.url) as gh,
    ):
        with pytest.raises(ValueError, match="SHA"):
            gh.set_status(REPO, "HEAD~1", "success", context="c")
        with pytest.raises(ValueError, match="OWNER/NAME"):
            gh.set_status("../../admin", SHA, "success", context="c")
        assert server.requests == []


def test_first_comment_is_created() -> None:
    issue = FakeIssue([comment(1, "LGTM", "alice")])
    with serve_github(issue) as server, GitHub(TOKEN, server.url) as gh:
        result = gh.upsert_comment(REPO, 7, "## summary")
        methods = [(r.method, r.path) for r in server.requests]
        post = server.requests[-1]
    assert result.action == "created"
    assert methods == [
        ("GET", f"/repos/{REPO}/issues/7/comments?per_page=100"),
        ("POST", f"/repos/{REPO}/issues/7/comments"),
    ]
    assert post.json() == {"body": f"{COMMENT_MARKER}\n## summary"}
    assert_api_headers(post)


def test_the_bots_comment_is_updated_even_on_a_later_page() -> None:
    issue = FakeIssue(
        [
            comment(1, "a", "alice"),
            comment(2, "b", "bob"),
            comment(3, "c", "carol"),
            comment(4, f"{COMMENT_MARKER}\nold"),
        ]
    )
    with serve_github(issue) as server, GitHub(TOKEN, server.url) as gh:
        result = gh.upsert_comment(REPO, 7, f"{COMMENT_MARKER}\nnew")
        paths = [(r.method, r.path) for r in server.requests]
        patch = server.requests[-1]
    assert result.action == "updated" and result.id == 4
    assert paths == [
        ("GET", f"/repos/{REPO}/issues/7/comments?per_page=100"),
        ("GET", "/repositories/1/issues/7/comments?per_page=100&page=2"),
        ("PATCH", f"/repos/{REPO}/issues/comments/4"),
    ]
    assert patch.json() == {"body": f"{COMMENT_MARKER}\nnew"}
    assert_api_headers(patch)
    assert len(issue.comments) == 4  # still exactly one bot comment


def test_an_identical_comment_is_left_alone() -> None:
    issue = FakeIssue([comment(9, f"{COMMENT_MARKER}\nsame")])
    with serve_github(issue) as server, GitHub(TOKEN, server.url) as gh:
        result = gh.upsert_comment(REPO, 7, f"{COMMENT_MARKER}\nsame")
        methods = [r.method for r in server.requests]
    assert result.action == "unchanged" and methods == ["GET"]


def test_a_person_quoting_the_marker_is_not_overwritten_when_the_author_is_known() -> None:
    issue = FakeIssue([comment(5, f"quoting {COMMENT_MARKER}", "mallory")])
    with serve_github(issue) as server, GitHub(TOKEN, server.url) as gh:
        result = gh.upsert_comment(REPO, 7, "summary", author="sonic-bot")
    assert result.action == "created"
    assert issue.comments[0]["body"] == f"quoting {COMMENT_MARKER}"


@pytest.mark.parametrize(("status", "transient"), [(422, False), (401, False), (502, True), (429, True)])
def test_errors_say_whether_a_retry_can_help(status: int, transient: bool) -> None:
    with (
        serve_github(lambda r: Response(status, github_error("nope"))) as server,
        GitHub(TOKEN, server.url) as gh,
        pytest.raises(GitHubError) as info,
    ):
        gh.set_status(REPO, SHA, "success", context="c")
    assert info.value.status == status and info.value.transient is transient
    assert "nope" in str(info.value)


# --- the CLI, as the workflow runs it ------------------------------------------------------------


# ``sonic github status`` for the commit under test; each test adds the options it is about.
STATUS = ["github", "status", "--repository", REPO, "--sha", SHA]


def write_token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_cli_status_from_the_workflow_phase(tmp_path: Path) -> None:
    with serve_github(
        lambda r: Response(201, github_status(r.json()["state"], r.json()["context"]))
    ) as server:
        result = CliRunner().invoke(
            cli,
            [*STATUS, "--workflow-status", "Failed", "--target-url", "", "--api-url", server.url,
             "--token-file", str(write_token(tmp_path))],
        )  # fmt: skip
        (req,) = server.requests
    assert result.exit_code == 0, result.output
    assert req.json() == {
        "state": "failure",
        "context": "sonic-gitops/pr-validation",
        "description": "validation failed: see the pull-request comment",
    }
    assert_api_headers(req)


def test_cli_exit_codes_separate_refusals_from_outages(tmp_path: Path) -> None:
    token = str(write_token(tmp_path))
    args = [*STATUS, "--state", "success", "--token-file", token]
    with serve_github(lambda r: Response(422, github_error("Validation Failed"))) as server:
        refused = CliRunner().invoke(cli, [*args, "--api-url", server.url])
    with serve_github(lambda r: Response(503, github_error("down"))) as server:
        outage = CliRunner().invoke(cli, [*args, "--api-url", server.url])
    assert refused.exit_code == 1 and "Validation Failed" in refused.output
    assert outage.exit_code == 2  # the workflow's retryStrategy retries exit code 2 only
    assert TOKEN not in refused.output + outage.output


def test_cli_needs_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    result = CliRunner().invoke(cli, [*STATUS, "--state", "pending"])
    assert result.exit_code == 2 and "no token" in result.output
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = CliRunner().invoke(cli, [*STATUS, "--state", "pending", "--token-file", str(empty)])
    assert result.exit_code == 2 and "empty" in result.output


def test_cli_comment_posts_a_summary(tmp_path: Path) -> None:
    issue = FakeIssue([])
    failures = '[{"displayName":"render-check","message":"Error (exit code 1)","templateName":"render-check","phase":"Failed"}]'
    with serve_github(issue) as server:
        result = CliRunner().invoke(
            cli,
            ["github", "comment", "--repository", REPO, "--pr", "7", "--sha", SHA, "--workflow-status", "Failed",
             "--failures", failures, "--workflow", "pr-validation-abcde", "--api-url", server.url,
             "--token-file", str(write_token(tmp_path))],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    (posted,) = issue.comments
    assert posted["body"].startswith(COMMENT_MARKER)
    assert "❌ validation failed" in posted["body"]
    assert "| `render-check` | Error (exit code 1) |" in posted["body"]
    assert f"`{SHA[:12]}`" in posted["body"]
