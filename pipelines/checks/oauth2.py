"""A bearer token for deployments behind JWT auth, obtained when the check runs.

Identity providers issue short-lived access tokens (Keycloak: 5 minutes by default), so a token
stored in a Secret expires long before the next scheduled check. What is stored instead is a
client's credentials, and each check asks the provider's token endpoint for a fresh token with
the OAuth 2.0 client credentials grant (RFC 6749 section 4.4):

- request (section 4.4.2): ``POST <token-url>``, ``application/x-www-form-urlencoded`` body
  ``grant_type=client_credentials`` (plus ``scope``, and ``audience`` where the provider wants
  one), the client authenticated with HTTP Basic (section 2.3.1: id and secret each
  form-urlencoded first) over TLS;
- answer (section 5.1): JSON with ``access_token`` and ``token_type`` ``Bearer`` (compared
  without case, section 5.1/7.1); errors (section 5.2): 400/401 with ``error`` and
  ``error_description``.

The credentials are a directory of files, as a Kubernetes Secret mounted as a volume gives them:
``token-url``, ``client-id``, ``client-secret`` and optionally ``scope`` and ``audience``.

Example::

    creds = load_client_credentials(Path("/var/run/secrets/sonic/check-client"))
    token = fetch_token(creds)   # "eyJhbGciOi..."
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

import httpx

TIMEOUT = 10.0  # seconds for the token request
REQUIRED = ("token-url", "client-id", "client-secret")
OPTIONAL = ("scope", "audience")


class CredentialsError(ValueError):
    """The credentials directory is missing a file, or a value is unusable (a usage error)."""


class TokenError(Exception):
    """The token endpoint did not give a token; ``transient`` for network errors, 429 and 5xx."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    audience: str | None = None


def load_client_credentials(directory: Path) -> ClientCredentials:
    """Read the files of ``directory``; raises CredentialsError naming what is missing or wrong."""
    values: dict[str, str] = {}
    for name in (*REQUIRED, *OPTIONAL):
        path = directory / name
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if name in REQUIRED:
                raise CredentialsError(
                    f"{path}: missing (the Secret needs the keys {', '.join(REQUIRED)})"
                ) from None
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"{path}: cannot be read ({exc})") from None
        if not text and name in REQUIRED:
            raise CredentialsError(f"{path}: empty")
        if text:
            values[name] = text
    url = values["token-url"]
    if not _safe_url(url):
        raise CredentialsError(
            f"{directory / 'token-url'}: {url!r}: the client secret is sent there, so it must be an "
            "https:// URL (plain http only to a loopback address)"
        )
    return ClientCredentials(
        token_url=url,
        client_id=values["client-id"],
        client_secret=values["client-secret"],
        scope=values.get("scope"),
        audience=values.get("audience"),
    )


def fetch_token(creds: ClientCredentials, timeout: float = TIMEOUT) -> str:
    """A fresh access token for ``creds`` (client credentials grant); raises TokenError."""
    form = {"grant_type": "client_credentials"}
    if creds.scope:
        form["scope"] = creds.scope
    if creds.audience:
        form["audience"] = creds.audience
    # Section 2.3.1: the id and secret are form-urlencoded before they are joined for Basic auth.
    auth = httpx.BasicAuth(quote_plus(creds.client_id), quote_plus(creds.client_secret))
    try:
        response = httpx.post(
            creds.token_url, data=form, auth=auth, headers={"Accept": "application/json"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise TokenError(
            f"token endpoint {creds.token_url}: {type(exc).__name__}: {exc}", transient=True
        ) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.is_success:
        detail = response.text.strip()[:200]
        if isinstance(body, dict) and "error" in body:
            detail = str(body["error"]) + (
                f": {body['error_description']}" if body.get("error_description") else ""
            )
        raise TokenError(
            f"token endpoint {creds.token_url} refused client {creds.client_id!r}: HTTP {response.status_code}: {detail}",
            transient=response.status_code >= 500 or response.status_code == 429,
        )
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("access_token"), str)
        or not body["access_token"]
    ):
        raise TokenError(f"token endpoint {creds.token_url}: the answer has no access_token")
    kind = str(body.get("token_type", ""))
    if kind.lower() != "bearer":
        raise TokenError(f"token endpoint {creds.token_url}: token_type {kind!r}, expected Bearer")
    token: str = body["access_token"]
    return token


def _safe_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False
