"""Spot values that look like credentials written inline, where only Secret references belong.

Configuration is committed to git and rendered into more committed files, so a pasted token
would leak twice. The patterns are deliberately specific (key headers, well-known token
prefixes, credentials in URLs, JWTs) to stay quiet on ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pipelines.config.errors import JsonPath

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a password in a URL", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*")),
)
# Keys that, in free-form maps (annotations, backend settings), announce a secret value.
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[-_]?key|private[-_]?key|credential)")
_FREE_FORM_PARENTS = {"annotations", "backendConfig"}
# ...unless the key says the value names a Secret (nginx's ``auth-tls-secret: ns/name``) and the
# value is such a name: a reference is exactly what belongs here.
_SECRET_NAME_KEY = re.compile(r"(?i)secret(?:[-_]?name)?$")
_OBJECT_REF = re.compile(r"^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def find_inline_secrets(data: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, str]]:
    """Yield (path, what it looks like) for every suspicious value in a parsed document."""
    if isinstance(data, dict):
        free_form = any(p in _FREE_FORM_PARENTS for p in path if isinstance(p, str))
        for key, value in data.items():
            child = (*path, key)
            if free_form and isinstance(value, str) and value and _SECRET_KEY.search(key):
                if not (_SECRET_NAME_KEY.search(key) and _OBJECT_REF.match(value)):
                    yield child, f"a value under a secret-like key {key!r}"
                continue
            yield from find_inline_secrets(value, child)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from find_inline_secrets(item, (*path, i))
    elif isinstance(data, str):
        for what, pattern in _PATTERNS:
            if pattern.search(data):
                yield path, what
                return
