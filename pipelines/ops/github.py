"""The few GitHub REST calls the pipelines make: commit statuses and the bot's pull-request comment.

A small client over ``httpx`` rather than a full SDK: three endpoints, explicit requests that
tests can assert byte for byte against a local server. The base URL is configurable (GitHub
Enterprise: ``https://HOST/api/v3``). Tokens come from a file (a mounted Secret) or the
environment, never from a command-line argument.

Example::

    with GitHub(token) as gh:
        gh.set_status("org/repo", sha, "success", context="sonic-gitops/pr-validation",
                      description="all checks passed")
        gh.upsert_comment("org/repo", 42, body, marker=COMMENT_MARKER)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx

from pipelines.ops.errors import RemoteError

DEFAULT_API = "https://api.github.com"
API_VERSION = "2022-11-28"
TIMEOUT = 20.0
COMMENT_MARKER = "<!-- sonic-gitops:pr-validation -->"
MAX_DESCRIPTION = 140  # GitHub rejects longer commit-status descriptions
MAX_COMMENT = 65_000  # GitHub's limit is 65,536 characters

State = Literal["pending", "success", "failure", "error"]
STATES: tuple[State, ...] = ("pending", "success", "failure", "error")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubError(RemoteError):
    """A GitHub call failed. ``transient``: a network problem, a 5xx or a rate limit (retry later)."""

    def __init__(self, message: str, status: int | None = None, transient: bool = False):
        super().__init__(message, transient)
        self.status = status


class TokenError(Exception):
    """No usable token (missing file, empty file, no environment variable)."""


def read_token(token_file: Path | None, env_var: str = "GITHUB_TOKEN") -> str:
    """The token from ``token_file`` (trailing whitespace stripped) or else from ``$env_var``."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TokenError(f"{token_file}: cannot read the token file ({exc.strerror})") from exc
        if not token:
            raise TokenError(f"{token_file}: the token file is empty")
        return token
    token = os.environ.get(env_var, "").strip()
    if not token:
        raise TokenError(f"no token: pass --token-file or set {env_var}")
    return token


def check_repository(repository: str) -> str:
    """``owner/name`` or ValueError (keeps stray slashes and dots out of request paths)."""
    if not _REPOSITORY.match(repository) or repository.split("/")[1] in (".", ".."):
        raise ValueError(f"{repository!r}: expected OWNER/NAME")
    return repository


@dataclass(frozen=True)
class CommentResult:
    action: Literal["created", "updated", "unchanged"]
    id: int
    url: str


class GitHub:
    """A GitHub REST API client for one token."""

    def __init__(self, token: str, base_url: str = DEFAULT_API, timeout: float = TIMEOUT):
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "sonic-gitops",
            },
            follow_redirects=False,
        )

    def __enter__(self) -> GitHub:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- commit statuses ---------------------------------------------------------------------

    def set_status(
        self,
        repository: str,
        sha: str,
        state: State,
        *,
        context: str,
        description: str = "",
        target_url: str | None = None,
    ) -> dict[str, Any]:
        """``POST /repos/{owner}/{repo}/statuses/{sha}``: one check line on the commit."""
        if state not in STATES:
            raise ValueError(f"state {state!r}: expected one of {', '.join(STATES)}")
        if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
            raise ValueError(f"{sha!r}: expected a commit SHA (hex)")
        body: dict[str, Any] = {"state": state, "context": context}
        if description:
            body["description"] = _shorten(description, MAX_DESCRIPTION)
        if target_url:
            body["target_url"] = target_url
        return self._json("POST", f"/repos/{check_repository(repository)}/statuses/{sha}", body)  # type: ignore[no-any-return]

    # --- pull-request (issue) comments --------------------------------------------------------

    def comments(self, repository: str, number: int) -> Iterator[dict[str, Any]]:
        """Every comment of an issue or pull request, oldest first, following pagination."""
        path: str | None = f"/repos/{check_repository(repository)}/issues/{number}/comments?per_page=100"
        while path is not None:
            response = self._request("GET", path)
            page = response.json()
            if not isinstance(page, list):
                raise GitHubError(f"GET {path}: expected a list of comments", response.status_code)
            yield from page
            path = _next_page(response)

    def create_comment(self, repository: str, number: int, body: str) -> dict[str, Any]:
        """``POST /repos/{owner}/{repo}/issues/{number}/comments``."""
        path = f"/repos/{check_repository(repository)}/issues/{number}/comments"
        return self._json("POST", path, {"body": body})  # type: ignore[no-any-return]

    def update_comment(self, repository: str, comment_id: int, body: str) -> dict[str, Any]:
        """``PATCH /repos/{owner}/{repo}/issues/comments/{id}``."""
        path = f"/repos/{check_repository(repository)}/issues/comments/{comment_id}"
        return self._json("PATCH", path, {"body": body})  # type: ignore[no-any-return]

    def upsert_comment(
        self,
        repository: str,
        number: int,
        body: str,
        *,
        marker: str = COMMENT_MARKER,
        author: str | None = None,
    ) -> CommentResult:
        """Keep exactly one bot comment on the pull request: update it if present, else create it.

        The bot's comment is the first one containing ``marker`` (and written by ``author`` when
        given, so a person quoting the marker never has their comment overwritten).
        """
        if marker not in body:
            body = f"{marker}\n{body}"
        body = _shorten(body, MAX_COMMENT)
        for comment in self.comments(repository, number):
            text = comment.get("body") or ""
            login = (comment.get("user") or {}).get("login")
            if marker in text and (author is None or login == author):
                if text == body:
                    return CommentResult("unchanged", int(comment["id"]), str(comment.get("html_url", "")))
                updated = self.update_comment(repository, int(comment["id"]), body)
                return CommentResult("updated", int(updated["id"]), str(updated.get("html_url", "")))
        created = self.create_comment(repository, number, body)
        return CommentResult("created", int(created["id"]), str(created.get("html_url", "")))

    # --- transport ----------------------------------------------------------------------------

    def _json(self, method: str, path: str, body: dict[str, Any]) -> Any:
        return self._request(method, path, body).json()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise GitHubError(f"{method} {path}: {type(exc).__name__}: {exc}", transient=True) from exc
        if response.is_success:
            return response
        limited = response.status_code == 429 or (
            response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
        )
        raise GitHubError(
            f"{method} {path}: HTTP {response.status_code}: {_message(response)}",
            status=response.status_code,
            transient=response.status_code >= 500 or limited,
        )


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    return str(data.get("message", data)) if isinstance(data, dict) else str(data)[:200]


def _next_page(response: httpx.Response) -> str | None:
    match = _NEXT_LINK.search(response.headers.get("link", ""))
    if not match:
        return None
    url = httpx.URL(match.group(1))
    # Pagination links are absolute; keep only path and query so the client's base URL (and
    # its credentials) are never sent to another host.
    base_path = response.request.url.path
    prefix = base_path[: base_path.index("/repos/")] if "/repos/" in base_path else ""
    path = url.raw_path.decode()
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
