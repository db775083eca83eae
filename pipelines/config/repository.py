"""``gitops/repository.yaml``: the Git repository Argo CD syncs from, and the pipeline image.

A small file of its own so that a fork changes one place: the AppProjects allow only this
repository as a source, the ApplicationSets point at it, and the PostSync check Job runs the
pipeline image. Read once, validated, then passed on as a frozen :class:`Repository`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from pipelines.config import layout
from pipelines.config.errors import ConfigError, ConfigErrors, Location, display_path
from pipelines.config.loader import load_file
from pipelines.config.schema import load_schema

# --- the pipelines' defaults: gitops/repository.yaml may set each -------------------------------------
# The image with the ``sonic`` CLI, built from the repository's Dockerfile, and its non-root user.
PIPELINE_IMAGE = "ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0"
PIPELINE_UID = 10001  # the Dockerfile's ``sonic`` user
# The branch Argo CD syncs from (a rollout copies one deployment's rendered directory there).
GITOPS_BRANCH = "gitops"
# OAuth2 client credentials of the checks in the pipelines namespace (JWT deployments).
CHECK_CLIENT_SECRET = "sonic-check-client"
# The read-only GitHub token: the one token mounted in experiment namespaces.
GITHUB_READ_TOKEN_SECRET = "sonic-github-read-token"

REPOSITORY_FILE = Path(layout.REPOSITORY_FILE)

# The one image-reference form of the schemas: by tag, or pinned by digest (@sha256:<64 hex>).
_IMAGE_SCHEMA: dict[str, Any] = load_schema("common")["$defs"]["image"]
# A GitHub user or team as CODEOWNERS names them (the experiment schema's owners use the same form).
HANDLE = r"^@[A-Za-z0-9][-A-Za-z0-9]*(/[A-Za-z0-9][-A-Za-z0-9_.]*)?$"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "branch", "pipelineImage", "platformTeam"],
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
            "pattern": _IMAGE_SCHEMA["pattern"],
        },
        "platformTeam": {
            "description": "GitHub team (@org/team) or user (@name) that owns the repository's infrastructure: "
            f"the pipelines' code, the schemas, this file, the rendered workflows and Argo CD objects, {layout.GITHUB_DIR}/, "
            "scripts/ and .ci/ (and site files whose site names no admins). `sonic render` writes it into "
            f"{layout.CODEOWNERS_FILE}; `sonic owners check` names it (docs/security.md, Ownership).",
            "type": "string",
            "pattern": HANDLE,
        },
        "pipelineUser": {
            "description": "Non-root UID of the pipeline image.",
            "type": "integer",
            "minimum": 1,
            "default": PIPELINE_UID,
        },
        "checkClientSecret": {
            "description": "Secret with OAuth2 client credentials (keys token-url, client-id, client-secret; "
            "scope and audience optional) with which the checks in the pipelines namespace (rollout, "
            "scheduled checks) get a fresh JWT for deployments that require one. A deployment's "
            "PostSync check uses its own <deployment>-check-client Secret in its namespace.",
            "type": "string",
            "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
            "default": CHECK_CLIENT_SECRET,
        },
        "githubReadToken": {
            "description": "Secret (key `token`) with a GitHub token that may only read the repository: the "
            "one token mounted in experiment namespaces (the checkout of build-model-repository). The "
            "token that writes commit statuses and comments stays in the pipelines namespace.",
            "type": "string",
            "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
            "default": GITHUB_READ_TOKEN_SECRET,
        },
    },
}


@dataclass(frozen=True)
class Repository:
    """Where Argo CD reads the rendered tree, and the image that checks what it deployed."""

    url: str
    branch: str
    pipeline_image: str
    pipeline_user: int = PIPELINE_UID
    check_client_secret: str = CHECK_CLIENT_SECRET
    github_read_token_secret: str = GITHUB_READ_TOKEN_SECRET
    platform_team: str = "@fastmachinelearning/sonic-platform"


DEFAULT = Repository(
    url="https://github.com/fastmachinelearning/sonic-gitops.git",
    branch=GITOPS_BRANCH,
    pipeline_image=PIPELINE_IMAGE,
)


def _message(err: ValidationError) -> str:
    """jsonschema's message, except for an image: say what a valid reference looks like."""
    if err.validator == "pattern" and list(err.absolute_path) == ["pipelineImage"]:
        what = _IMAGE_SCHEMA["description"].rstrip(".")
        return f"{err.instance!r} is not valid: expected {what[0].lower()}{what[1:]}"
    return str(err.message)


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
    if isinstance(doc.data, dict) and "checkTokenSecret" in doc.data:
        # A static token expires (identity providers issue minutes-long tokens): say what replaced it.
        raise ConfigErrors(
            [
                doc.error(
                    ("checkTokenSecret",),
                    "replaced by checkClientSecret: the name of a Secret with OAuth2 client credentials "
                    "(token-url, client-id, client-secret), from which each check gets a fresh token; "
                    "see docs/gitops.md",
                    key=True,
                )
            ]
        )
    errors = [
        doc.error(tuple(e.absolute_path), _message(e))
        for e in sorted(
            Draft202012Validator(SCHEMA).iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))
        )
    ]
    if errors:
        raise ConfigErrors(errors)
    data = doc.data
    return Repository(
        url=data["url"],
        branch=data["branch"],
        pipeline_image=data["pipelineImage"],
        pipeline_user=int(data.get("pipelineUser", DEFAULT.pipeline_user)),
        check_client_secret=str(data.get("checkClientSecret", DEFAULT.check_client_secret)),
        github_read_token_secret=str(data.get("githubReadToken", DEFAULT.github_read_token_secret)),
        platform_team=data["platformTeam"],
    )
