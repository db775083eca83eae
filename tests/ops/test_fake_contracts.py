"""The fakes are held to the real contracts: GitHub's published REST API description and Argo CD's CRD."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft7Validator

from tests.ops.fakes import (
    Response,
    application,
    github_comment,
    github_error,
    github_status,
    serve_github,
)
from tests.render.support import crd_schema
from tests.support.github_contract import contract

REPO = "fastml/sonic-gitops"


def test_the_description_is_githubs_and_pinned() -> None:
    api = contract()
    assert api.document["servers"] == [{"url": "https://api.github.com"}]
    assert api.version == "23.0.2"  # scripts/github-openapi.sh


def test_the_fakes_answers_fit_the_published_schemas() -> None:
    api = contract()
    status = github_status("success", "sonic-gitops/pr-validation")
    request = b'{"state": "success", "context": "sonic-gitops/pr-validation"}'
    assert api.check("POST", f"/repos/{REPO}/statuses/{'a' * 40}", request, 201, status) == []
    comment = github_comment(3, "hello", "sonic-bot", REPO)
    assert api.check("GET", f"/repos/{REPO}/issues/7/comments?per_page=100", b"", 200, [comment]) == []
    assert api.check("PATCH", f"/repos/{REPO}/issues/comments/3", b'{"body": "x"}', 200, comment) == []
    assert api.check("GET", "/repositories/1/issues/7/comments?page=2", b"", 200, []) == []
    assert api.check("POST", f"/repos/{REPO}/statuses/{'a' * 40}", request, 503, github_error("down")) == []


@pytest.mark.parametrize(
    ("method", "path", "request_body", "status", "answer", "violation"),
    [
        # The answers the fake used to give: too thin to be GitHub's.
        (
            "POST",
            f"/repos/{REPO}/statuses/{'a' * 40}",
            b'{"state": "success"}',
            201,
            {"id": 1},
            "'url' is a required",
        ),
        (
            "GET",
            f"/repos/{REPO}/issues/7/comments",
            b"",
            200,
            [{"id": 1, "body": "b"}],
            "'node_id' is a required",
        ),
        # What our client could get wrong.
        (
            "POST",
            f"/repos/{REPO}/statuses/{'a' * 40}",
            b'{"state": "green"}',
            503,
            github_error("x"),
            "'green' is not",
        ),
        (
            "POST",
            f"/repos/{REPO}/issues/7/comments",
            b'{"text": "x"}',
            422,
            github_error("x"),
            "'body' is a required",
        ),
        ("DELETE", f"/repos/{REPO}/statuses/{'a' * 40}", b"", 204, None, "no such operation"),
        (
            "POST",
            f"/repos/{REPO}/statuses/{'a' * 40}",
            b'{"state": "success"}',
            200,
            {},
            "does not answer 200",
        ),
        (
            "GET",
            f"/repos/{REPO}/issues/7/comments",
            b"",
            401,
            {"message": 401},
            "401 is not of type 'string'",
        ),
    ],
)
def test_a_broken_exchange_is_named(
    method: str, path: str, request_body: bytes, status: int, answer: object, violation: str
) -> None:
    problems = contract().check(method, path, request_body, status, answer)
    assert any(violation in p for p in problems), problems


def test_a_fake_that_breaks_the_contract_fails_the_test() -> None:
    fake = serve_github(lambda r: Response(201, {"id": 1}))
    with pytest.raises(AssertionError, match="'url' is a required property"), fake as server:
        httpx.post(f"{server.url}/repos/{REPO}/statuses/{'a' * 40}", json={"state": "success"})


def test_the_fake_argo_cd_application_is_held_to_argo_cds_crd() -> None:
    """``fakes.application`` validates what it returns; this is the check it runs, failing."""
    app = application("cms-minimal-uchicago")  # valid: it would raise otherwise
    del app["status"]["operationState"]["operation"]
    errors = [e.message for e in Draft7Validator(crd_schema("Application", "v1alpha1")).iter_errors(app)]
    assert errors == ["'operation' is a required property"]
