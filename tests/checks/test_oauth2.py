"""The OAuth2 client credentials grant the checks get their JWT with (issue 10.10), against a local
token endpoint on 127.0.0.1 that checks each request the way RFC 6749 asks a server to.

A static token in a Secret expires (Keycloak issues 5-minute access tokens by default), so the
Secret holds a client's credentials and each check asks for a fresh token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus

import pytest
from click.testing import CliRunner

from pipelines.checks.oauth2 import (
    ClientCredentials,
    CredentialsError,
    TokenError,
    fetch_token,
    load_client_credentials,
)
from pipelines.cli import cli
from pipelines.local.processes import free_port
from tests.conftest import FIXTURE
from tests.ops.fakes import RecordingServer, Request, Response, serve

CLIENT_ID = "sonic:checks%1"  # characters section 2.3.1's form-encoding exists for
SECRET = "s3cr&t:+/"


def token_endpoint(token: str = "eyJ.fresh.jwt") -> Callable[[Request], Response]:
    """A token endpoint that answers exactly as RFC 6749 section 4.4 and 5 say, and nothing else."""

    def handle(req: Request) -> Response:
        if req.method != "POST" or req.path != "/realms/sonic/protocol/openid-connect/token":
            return Response(404, {"error": "not_found"})
        # Section 4.4.2: form-encoded body with grant_type=client_credentials.
        if req.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return Response(400, {"error": "invalid_request", "error_description": "not a form"})
        form = {k: v[0] for k, v in parse_qs(req.body.decode(), strict_parsing=True).items()}
        if form.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type"})
        # Section 2.3.1: HTTP Basic with id and secret each form-urlencoded before joining.
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        user, _, password = (
            base64.b64decode(value).decode().partition(":") if scheme == "Basic" else ("", "", "")
        )
        if (unquote_plus(user), unquote_plus(password)) != (CLIENT_ID, SECRET):
            return Response(
                401, {"error": "invalid_client", "error_description": "Invalid client credentials"}
            )
        # Section 5.1: the access token, its type and lifetime.
        return Response(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": form.get("scope", ""),
            },
        )

    return handle


@pytest.fixture
def idp() -> Iterator[RecordingServer]:
    with serve(token_endpoint()) as server:
        yield server


def credentials_dir(tmp_path: Path, url: str, **extra: str) -> Path:
    """A directory as a mounted Secret gives it: one file per key."""
    d = tmp_path / "check-client"
    d.mkdir(exist_ok=True)
    values = {"token-url": url, "client-id": CLIENT_ID, "client-secret": SECRET, **extra}
    for key, value in values.items():
        (d / key).write_text(value + "\n")
    return d


def test_a_fresh_token_from_the_client_credentials_grant(idp: RecordingServer, tmp_path: Path) -> None:
    url = f"{idp.url}/realms/sonic/protocol/openid-connect/token"
    creds = load_client_credentials(credentials_dir(tmp_path, url, scope="sonic-checks"))
    assert creds == ClientCredentials(url, CLIENT_ID, SECRET, scope="sonic-checks")
    assert SECRET not in repr(creds)
    assert fetch_token(creds) == "eyJ.fresh.jwt"
    (req,) = idp.requests
    assert parse_qs(req.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["sonic-checks"]}
    assert req.headers["accept"] == "application/json"


def test_refusals_and_outages_say_whether_to_retry(idp: RecordingServer, tmp_path: Path) -> None:
    url = f"{idp.url}/realms/sonic/protocol/openid-connect/token"
    wrong = ClientCredentials(url, CLIENT_ID, "wrong")
    with pytest.raises(TokenError, match="HTTP 401: invalid_client: Invalid client credentials") as info:
        fetch_token(wrong)
    assert not info.value.transient and "wrong" not in str(info.value)
    with serve(lambda r: Response(503, "maintenance")) as down, pytest.raises(TokenError) as info:
        fetch_token(ClientCredentials(down.url, CLIENT_ID, SECRET))
    assert info.value.transient
    with pytest.raises(TokenError) as info:
        fetch_token(ClientCredentials(f"http://127.0.0.1:{free_port()}/token", CLIENT_ID, SECRET), timeout=2)
    assert info.value.transient
    for body, message in (
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": "x", "token_type": "mac"}, "expected Bearer"),
    ):
        with serve(lambda r, b=body: Response(200, b)) as odd, pytest.raises(TokenError, match=message):
            fetch_token(ClientCredentials(odd.url, CLIENT_ID, SECRET))


def test_credentials_files_are_checked(tmp_path: Path) -> None:
    d = credentials_dir(tmp_path, "https://idp.example.org/token")
    (d / "client-secret").unlink()
    with pytest.raises(CredentialsError, match="client-secret: missing"):
        load_client_credentials(d)
    d = credentials_dir(tmp_path, "http://idp.example.org/token")
    with pytest.raises(CredentialsError, match="must be an https:// URL"):
        load_client_credentials(d)  # the secret would travel in the clear


# --- sonic check --client-credentials ---------------------------------------------------------------


JWT_DEPLOYMENT = FIXTURE / "gitops/rendered/nautilus/icecube/cnn-classifier"  # declares JWT auth


def check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", "--rendered", str(JWT_DEPLOYMENT), "--endpoint",
                                      f"127.0.0.1:{free_port()}", "--timeout", "10", "--metrics-wait", "0", *args])  # fmt: skip
    return result.exit_code, result.output


def test_check_gets_its_token_when_it_runs(idp: RecordingServer, tmp_path: Path) -> None:
    url = f"{idp.url}/realms/sonic/protocol/openid-connect/token"
    code, output = check("--client-credentials", str(credentials_dir(tmp_path, url)), "--format", "json")
    # Nothing answers at the endpoint, so the checks fail (1); the token was obtained first.
    assert code == 1, output
    assert [r.method for r in idp.requests] == ["POST"]
    report = json.loads(output[output.index("{") :])
    assert "no token was given" not in json.dumps(report)


def test_check_exit_codes_for_token_problems(idp: RecordingServer, tmp_path: Path) -> None:
    url = f"{idp.url}/realms/sonic/protocol/openid-connect/token"
    d = credentials_dir(tmp_path, url)
    (d / "client-secret").write_text("wrong\n")
    code, output = check("--client-credentials", str(d))
    assert code == 1 and "invalid_client" in output  # refused: a verdict, not retried
    d = credentials_dir(tmp_path, f"http://127.0.0.1:{free_port()}/token")
    code, output = check("--client-credentials", str(d))
    assert code == 2 and "token endpoint" in output  # unreachable: worth retrying
    token = tmp_path / "token"
    token.write_text("t\n")
    code, output = check("--client-credentials", str(d), "--token-file", str(token))
    assert code == 2 and "not both" in output


# --- one audience per deployment (issue 11, finding 14) ---------------------------------------------


def test_check_asks_for_the_deployments_own_audience(idp: RecordingServer, tmp_path: Path) -> None:
    url = f"{idp.url}/realms/sonic/protocol/openid-connect/token"
    check("--client-credentials", str(credentials_dir(tmp_path, url)))
    (req,) = idp.requests
    # The first of the deployment's envoy.auth.jwt.audiences (experiments/icecube/cnn-classifier.yaml).
    assert parse_qs(req.body.decode())["audience"] == ["icecube-sonic"]
    idp.requests.clear()
    check("--client-credentials", str(credentials_dir(tmp_path, url, audience="iceprod")))
    (req,) = idp.requests
    assert parse_qs(req.body.decode())["audience"] == ["iceprod"]  # another of its own: kept


def test_credentials_for_another_audience_are_refused_before_asking(
    idp: RecordingServer, tmp_path: Path
) -> None:
    url = f"{idp.url}/realms/sonic/protocol/openid-connect/token"
    code, output = check("--client-credentials", str(credentials_dir(tmp_path, url, audience="cms-sonic")))
    assert code == 2, output
    assert "'cms-sonic' is not an audience of this deployment" in output
    assert not idp.requests
