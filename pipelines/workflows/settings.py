"""Where the pipelines run and what they run: the image, namespace, repository and Secret names.

The repository, the GitOps branch, the pipeline image and its user come from
``gitops/repository.yaml`` (the file ``sonic render`` reads too, so the Argo CD tree and the
pipelines can never disagree); the rest are defaults here. Secret *names* and *keys* live here;
Secret values never appear in the repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.config import names
from pipelines.config.repository import REPOSITORY_FILE, Repository, load_repository


@dataclass(frozen=True)
class SecretRef:
    """A key of a Kubernetes Secret in the pipelines namespace, referenced, never copied."""

    name: str
    key: str


@dataclass(frozen=True)
class PipelineSettings:
    """Everything the rendered pipelines need to know about their environment."""

    # The pipeline image built from the repository's Dockerfile (see IMAGE below).
    image: str
    namespace: str = names.PIPELINES_NAMESPACE
    # The configuration repository on GitHub (owner/name), and where git and the API live
    # (GitHub Enterprise sites change both).
    repository: str = "fastmachinelearning/sonic-gitops"
    git_server: str = "https://github.com"
    github_api: str = "https://api.github.com"
    base_branch: str = "main"
    # The branch Argo CD syncs from. ``sonic render`` output is reviewed on ``main``; a rollout
    # copies one deployment's rendered directory to this branch, so a failed rollout is one revert.
    gitops_branch: str = names.GITOPS_BRANCH
    # Secrets (by reference): a token that may read the repository, set commit statuses and
    # write pull-request comments (pipelines namespace only); a token that may only read the
    # repository, the one mounted in experiment namespaces, where a pull request's code runs;
    # a token that may push to the GitOps branch; the webhook secret GitHub signs deliveries with.
    github_token: SecretRef = SecretRef("sonic-github-token", "token")
    github_read_token: SecretRef = SecretRef(names.GITHUB_READ_TOKEN_SECRET, "token")
    push_token: SecretRef = SecretRef("sonic-gitops-push-token", "token")
    webhook_secret: SecretRef = SecretRef("sonic-github-webhook", "secret")
    # OAuth2 client credentials (keys token-url, client-id, client-secret; scope, audience
    # optional) with which checks of deployments behind JWT auth get a fresh token each run.
    check_client: str = names.CHECK_CLIENT_SECRET
    # Copy of the site's Prometheus bearer token (sites whose Prometheus needs one), for the
    # checks' scaling queries; the site file names the Secret in the deployment namespaces.
    prometheus_token: SecretRef = SecretRef("sonic-prometheus-token", "token")
    # Non-root identity of every step (the Dockerfile creates this user).
    run_as_user: int = names.PIPELINE_UID
    status_context: str = "sonic-gitops/pr-validation"

    @property
    def clone_url(self) -> str:
        return f"{self.git_server.rstrip('/')}/{self.repository}.git"


# Used when a tree has no gitops/repository.yaml (tests of other trees); the real value is there.
IMAGE = names.PIPELINE_IMAGE
DEFAULT = PipelineSettings(image=IMAGE)

_HTTPS = re.compile(r"^https://(?P<host>[^/\s]+)/(?P<repo>[^/\s]+/[^/\s]+?)(?:\.git)?/?$")
_SSH = re.compile(r"^(?:ssh://)?git@(?P<host>[^:/\s]+)[:/](?P<repo>[^/\s]+/[^/\s]+?)(?:\.git)?$")


class SettingsError(Exception):
    """gitops/repository.yaml names a repository the pipelines cannot use."""


def from_repository(repo: Repository, base: PipelineSettings = DEFAULT) -> PipelineSettings:
    """Settings for the repository Argo CD syncs from.

    Clones and API calls go over HTTPS with a token (an ``ssh`` URL is mapped to the same host),
    and a host other than github.com is taken to be GitHub Enterprise (API under ``/api/v3``).
    """
    match = _HTTPS.match(repo.url) or _SSH.match(repo.url)
    if match is None:
        raise SettingsError(f"{REPOSITORY_FILE}: url {repo.url!r}: expected https://HOST/OWNER/NAME(.git)")
    host = match["host"]
    api = "https://api.github.com" if host == "github.com" else f"https://{host}/api/v3"
    return replace(
        base,
        image=repo.pipeline_image,
        run_as_user=repo.pipeline_user,
        repository=match["repo"],
        git_server=f"https://{host}",
        github_api=api,
        gitops_branch=repo.branch,
        check_client=repo.check_client_secret,
        github_read_token=SecretRef(repo.github_read_token_secret, "token"),
    )


def load_settings(root: Path) -> PipelineSettings:
    """Settings of the repository at ``root`` (DEFAULT when it has no gitops/repository.yaml).

    Raises ConfigErrors (located) for an invalid file and SettingsError for an unusable URL.
    """
    if not (root / REPOSITORY_FILE).is_file():
        return DEFAULT
    return from_repository(load_repository(root))
