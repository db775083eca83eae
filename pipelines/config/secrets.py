"""Spot values that look like credentials written inline, where only Secret references belong.

Configuration is committed to git and rendered into more committed files, so a pasted token
would leak twice. The rules are detect-secrets' (Yelp's maintained scanner), applied to each
parsed value rather than to lines, so every finding keeps the exact field it was found in:

- its token detectors (AWS, GitHub, GitLab, Slack, JWT, private keys, Basic Auth URLs, Stripe,
  Twilio, ...) on every string value;
- its entropy rules (Base64HighEntropyString, HexHighEntropyString: their alphabets, entropy
  function and limits) on every run of base64 or hex characters long enough to hold a key
  (a bare PEM body, a pasted API key), with its sequence/UUID/template filters;
- its KeywordDetector on ``key: value`` of free-form maps (annotations, backend settings),
  plus the key words it lacks (``token``, ``auth``, ``sig``...);
- URLs parsed with urllib: user information (``https://TOKEN@host``) and secret-named query
  parameters (``?access_token=``, an Azure SAS ``sig=``, S3 ``X-Amz-Signature=``).

Schema-checked digests (``sha256`` fields, ``@sha256:`` image digests) are not secrets and are
skipped by the hex rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters.heuristic import is_potential_uuid, is_sequential_string, is_templated_secret
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ip_public import IPPublicDetector
from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, KeywordDetector

from pipelines.config.errors import JsonPath

# Every token detector detect-secrets ships, except the rules handled below (keywords, entropy)
# and public IP addresses, which are not credentials.
_SPECIAL: tuple[type[BasePlugin], ...] = (
    KeywordDetector,
    Base64HighEntropyString,
    HexHighEntropyString,
    IPPublicDetector,
)
_PLUGINS: Mapping[str, type[BasePlugin]] = get_mapping_from_secret_type_to_class()
_DETECTORS: tuple[BasePlugin, ...] = tuple(cls() for cls in _PLUGINS.values() if cls not in _SPECIAL)
_KEYWORDS = KeywordDetector()
_BASE64 = Base64HighEntropyString()
_HEX = HexHighEntropyString()

# detect-secrets' own names for what it found, in the words of this project's messages.
_WHAT = {
    "AWS Access Key": "an AWS access key",
    "Basic Auth Credentials": "a password in a URL",
    "Private Key": "a private key",
    "JSON Web Token": "a JSON Web Token",
    "GitHub Token": "a GitHub token",
    "GitLab Token": "a GitLab token",
    "Slack Token": "a Slack token",
}

# Base64 comes in two alphabets that never mix ('+/' or '-_'); scanning each separately keeps
# paths (words joined by '/' and '_') from reading as one long random string.
_B64_RUNS = (re.compile(r"[A-Za-z0-9+/]{20,}={0,2}"), re.compile(r"[A-Za-z0-9_-]{20,}={0,2}"))
_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")
_DIGEST = re.compile(r"(?i)sha(?:256|512):[0-9a-f]+")
_DIGEST_KEYS = {"sha256"}

# Key words KeywordDetector lacks, matched against the last word of a key or query parameter
# (so ``auth-url`` or ``session-cookie-name`` stay quiet, ``api-token`` and ``sig`` do not).
_MORE_KEYWORDS = {"token", "auth", "sig", "signature", "credential", "credentials", "apikey", "pwd"}
_WORD = re.compile(r"[A-Za-z0-9]+")

_FREE_FORM_PARENTS = {"annotations", "backendConfig"}
# ...unless the key says the value names a Secret (nginx's ``auth-tls-secret: ns/name``) and the
# value is such a name: a reference is exactly what belongs here.
_SECRET_NAME_KEY = re.compile(r"(?i)secret(?:[-_]?name)?$")
_OBJECT_REF = re.compile(r"^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def secret_like_name(name: str) -> bool:
    """Whether a key or parameter name announces a secret value (detect-secrets' key words and ours)."""
    if any(_KEYWORDS.analyze_string(f"{name}: value", CONFIG_DENYLIST_REGEX_TO_GROUP)):
        return True
    words = _WORD.findall(name.lower())
    return bool(words) and words[-1] in _MORE_KEYWORDS


def _random(plugin: HighEntropyStringsPlugin, candidate: str) -> bool:
    if is_sequential_string(candidate) or is_potential_uuid(candidate) or is_templated_secret(candidate):
        return False
    return plugin.calculate_shannon_entropy(candidate) > plugin.entropy_limit


def _in_url(text: str) -> str | None:
    for match in _URL.finditer(text):
        try:
            url = urlsplit(match.group(0))
            user, password = url.username, url.password
        except ValueError:
            continue
        if password:
            return "a password in a URL"
        if user:
            return "a credential in a URL (user information before '@')"
        for name, _ in parse_qsl(url.query, keep_blank_values=False):
            if secret_like_name(name):
                return f"a credential in a URL (query parameter {name!r})"
    return None


def _entropy(text: str, digest_field: bool) -> str | None:
    compact = re.sub(r"\s+", "", text) if "\n" in text.strip() else ""
    for candidate in (text, compact):  # a PEM body split over lines is one blob
        for run in _B64_RUNS:
            if any(_random(_BASE64, m.group(0)) for m in run.finditer(candidate)):
                return "a random-looking (high-entropy base64) string, such as a key or token"
        if not digest_field:
            hexed = _DIGEST.sub("", candidate)
            if any(_random(_HEX, m.group(0)) for m in _HEX_RUN.finditer(hexed)):
                return "a random-looking (high-entropy hex) string, such as a key or token"
    return None


@lru_cache(maxsize=1 << 16)  # trees repeat values (dtypes, images, hosts) across deployments
def what_secret(text: str, key: str = "") -> str | None:
    """What ``text`` (the value of ``key``) looks like, when it looks like a credential."""
    for detector in _DETECTORS:
        if any(detector.analyze_string(text)):
            secret_type = str(detector.secret_type)
            return _WHAT.get(secret_type, f"a credential ({secret_type})")
    return _in_url(text) or _entropy(text, key in _DIGEST_KEYS)


def find_inline_secrets(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, str]]:
    """Yield (path, what it looks like) for every suspicious value in a parsed document."""
    if isinstance(data, dict):
        free_form = any(p in _FREE_FORM_PARENTS for p in path if isinstance(p, str))
        for key, value in data.items():
            child = (*path, key)
            if free_form and isinstance(value, str) and value and secret_like_name(str(key)):
                if not (_SECRET_NAME_KEY.search(str(key)) and _OBJECT_REF.match(value)):
                    yield child, f"a value under a secret-like key {key!r}"
                continue
            yield from find_inline_secrets(value, child)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from find_inline_secrets(item, (*path, i))
    elif isinstance(data, str):
        key = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
        what = what_secret(data, key if key in _DIGEST_KEYS else "")
        if what:
            yield path, what
