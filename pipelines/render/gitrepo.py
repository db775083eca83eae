"""``gitops/repository.yaml``: the Git repository Argo CD syncs from, and the pipeline image.

A small file of its own so that a fork changes one place: the AppProjects allow only this
repository as a source, the ApplicationSets point at it, and the PostSync check Job runs the
pipeline image. Read once, validated, then passed on as a frozen :class:`Repository`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from pipelines.config.errors import ConfigError, ConfigErrors, Location, display_path
from pipelines.config.loader import load_file

REPOSITORY_FILE = Path("gitops/repository.yaml")

_IMAGE = r"^[a-z0-9]([-a-z0-9._/:]*[a-z0-9])?(:[A-Za-z0-9_][-A-Za-z0-9_.]{0,127})?(@sha256:[a-f0-9]{64})?$"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "branch", "pipelineImage"],
    "properties": {
        "url": {
            "description": "Clone URL Argo CD reads (the only source repository the AppProjects allow).",
            "type": "string",
            "pattern": r"^(https://[^\s/]+/[^\s]+|ssh://[^\s]+|git@[^\s:]+:[^\s]+)$",
        },
        "branch": {
            "description": "Branch (targetRevision) the Applications track.",
            "type": "string",
            "pattern": r"^[A-Za-z0-9][-A-Za-z0-9._/]*$",
        },
        "pipelineImage": {
            "description": "Image with the `sonic` CLI (runs the PostSync check).",
            "type": "string",
            "pattern": _IMAGE,
        },
        "pipelineUser": {
            "description": "Non-root UID of the pipeline image.",
            "type": "integer",
            "minimum": 1,
            "default": 10001,
        },
        "checkTokenSecret": {
            "description": "Secret (in each deployment namespace) with a JWT the PostSync check sends to deployments that require one.",
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "key"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
                "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
            },
        },
    },
}


@dataclass(frozen=True)
class Repository:
    """Where Argo CD reads the rendered tree, and the image that checks what it deployed."""

    url: str
    branch: str
    pipeline_image: str
    pipeline_user: int = 10001
    check_token_secret: tuple[str, str] = ("sonic-check-token", "token")


DEFAULT = Repository(
    url="https://github.com/fastmachinelearning/sonic-gitops.git",
    branch="gitops",
    pipeline_image="ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0",
)


def load_repository(root: Path) -> Repository:
    """Read and validate ``<root>/gitops/repository.yaml``; ConfigErrors (file:line: field: message) if invalid."""
    path = root / REPOSITORY_FILE
    if not path.is_file():
        raise ConfigErrors(
            [
                ConfigError(
                    Location(display_path(path)),
                    "(top level)",
                    "missing: it names the repository Argo CD syncs from (url, branch, pipelineImage); see docs/gitops.md",
                )
            ]
        )
    doc = load_file(path, display_path(path))
    errors = [
        doc.error(tuple(e.absolute_path), e.message)
        for e in sorted(
            Draft202012Validator(SCHEMA).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))
        )
    ]
    if errors:
        raise ConfigErrors(errors)
    data = doc.data
    token = data.get("checkTokenSecret") or {
        "name": DEFAULT.check_token_secret[0],
        "key": DEFAULT.check_token_secret[1],
    }
    return Repository(
        url=data["url"],
        branch=data["branch"],
        pipeline_image=data["pipelineImage"],
        pipeline_user=int(data.get("pipelineUser", DEFAULT.pipeline_user)),
        check_token_secret=(token["name"], token["key"]),
    )
