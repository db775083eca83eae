"""GitHub's published REST API contract, to check the fake GitHub server and our client against.

The description is GitHub's OpenAPI 3.0 document for api.github.com, fetched by
``scripts/github-openapi.sh`` (npm package ``@octokit/openapi``, pinned) into a cache outside the
repository. For each request the fake answers, :class:`Contract` finds the operation by method and
path template and validates, with ``openapi-schema-validator`` (OpenAPI 3.0's dialect of JSON
Schema: ``nullable`` and friends), the request body our client sent against the operation's
``requestBody`` schema and the body the fake answers against the schema of the response with that
status. An operation or status the description does not list is itself a violation.

The fake's answers are built from the description's own examples (:meth:`Contract.example`), so
they carry every field GitHub sends, not only the ones our client reads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "github-openapi.sh"
BASE = "urn:github:api.github.com"


def description_path() -> Path:
    """Where the fetch script put the description (it fetches it when missing: npm, a package)."""
    if explicit := os.environ.get("SONIC_GITHUB_OPENAPI"):
        return Path(explicit)
    out = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed: {out.stderr.strip()}")
    return Path(out.stdout.strip())


class Contract:
    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.version = document["info"]["version"]
        self._registry: Registry[Any] = Registry().with_resource(
            BASE, Resource.from_contents(document, default_specification=DRAFT4)
        )
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"), t)
            for t in document["paths"]
        ]

    def template(self, method: str, path: str) -> str | None:
        """The path template of the operation ``method path`` (query ignored), if GitHub has one.

        GitHub's pagination links address a repository by id (``/repositories/{id}/…``), a form the
        description does not list; it is the same operation as ``/repos/{owner}/{repo}/…``.
        """
        bare = re.sub(r"^/repositories/\d+/", "/repos/{owner}/{repo}/", urlsplit(path).path)
        # Most specific first: a literal segment beats a parameter (…/issues/comments/{id}).
        matches = [
            t for rx, t in self._templates if rx.match(bare) and method.lower() in self.document["paths"][t]
        ]
        return min(matches, key=lambda t: t.count("{"), default=None)

    def _validate(self, pointer: str, instance: Any) -> list[str]:
        validator = OAS30Validator({"$ref": f"{BASE}#{pointer}"}, registry=self._registry)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
        ]

    def check(
        self, method: str, path: str, request_body: bytes, status: int, response_body: Any
    ) -> list[str]:
        """Violations of the contract by one exchange (empty when it is one GitHub could have had)."""
        where = f"{method} {urlsplit(path).path}"
        template = self.template(method, path)
        if template is None:
            return [f"{where}: no such operation in GitHub's REST API {self.version}"]
        escaped = template.replace("~", "~0").replace("/", "~1")
        op = self.document["paths"][template][method.lower()]
        problems = []
        if "requestBody" in op and request_body:
            pointer = f"/paths/{escaped}/{method.lower()}/requestBody/content/application~1json/schema"
            problems += [f"{where} request: {p}" for p in self._validate(pointer, json.loads(request_body))]
        response = op["responses"].get(str(status))
        if response is None:
            # Statuses every operation can answer without the description listing them (401 bad
            # credentials, 403/429 rate limits, 5xx) carry GitHub's error body, ``basic-error``.
            if status < 400:
                return [
                    *problems,
                    f"{where}: GitHub does not answer {status} (it answers {sorted(op['responses'])})",
                ]
            errors = self._validate("/components/schemas/basic-error", response_body)
            return [*problems, *(f"{where} {status} response: {p}" for p in errors)]
        response = self._resolve(response)
        if "application/json" in response.get("content", {}):
            content = self._content_pointer(response, escaped, method, status)
            problems += [f"{where} {status} response: {p}" for p in self._validate(content, response_body)]
        return problems

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            node: Any = self.document
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
        return obj

    def _content_pointer(self, response: dict[str, Any], escaped: str, method: str, status: int) -> str:
        raw = self.document["paths"][escaped.replace("~1", "/").replace("~0", "~")][method.lower()][
            "responses"
        ][str(status)]
        if "$ref" in raw:  # a shared response (components/responses/…)
            return raw["$ref"].removeprefix("#") + "/content/application~1json/schema"
        return f"/paths/{escaped}/{method.lower()}/responses/{status}/content/application~1json/schema"

    def example(self, method: str, template: str, status: int) -> Any:
        """A fresh copy of the description's example answer of an operation."""
        op = self.document["paths"][template][method.lower()]
        content = self._resolve(op["responses"][str(status)])["content"]["application/json"]
        example = self._resolve(next(iter(content["examples"].values())))
        return copy.deepcopy(example["value"])


@cache
def contract() -> Contract:
    return Contract(json.loads(description_path().read_text()))
