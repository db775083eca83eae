"""Image references, hostPaths and reserved namespaces: the helpers behind the platform-boundary rules."""

from __future__ import annotations

import pytest

from pipelines.config import names
from pipelines.config.hostpaths import cvmfs_host_path_problem
from pipelines.config.images import allowed, repository
from pipelines.config.reserved import RESERVED_NAMESPACES
from pipelines.workflows.settings import DEFAULT


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("envoyproxy/envoy:distroless-v1.40.0", "docker.io/envoyproxy/envoy"),
        ("docker.io/envoyproxy/envoy", "docker.io/envoyproxy/envoy"),
        ("index.docker.io/envoyproxy/envoy:v1", "docker.io/envoyproxy/envoy"),
        ("envoy", "docker.io/library/envoy"),
        ("nvcr.io/nvidia/tritonserver:24.08-py3", "nvcr.io/nvidia/tritonserver"),
        ("nvcr.io/nvidia/tritonserver@sha256:" + "a" * 64, "nvcr.io/nvidia/tritonserver"),
        ("nvcr.io/nvidia/tritonserver:24.08@sha256:" + "a" * 64, "nvcr.io/nvidia/tritonserver"),
        ("localhost:5000/triton:1", "localhost:5000/triton"),
        ("registry.local:5000/a/b", "registry.local:5000/a/b"),
    ],
)
def test_repository_is_spelled_out_as_runtimes_resolve_it(image: str, repo: str) -> None:
    assert repository(image) == repo


@pytest.mark.parametrize(
    ("image", "entries", "ok"),
    [
        ("envoyproxy/envoy:v1", ("docker.io/envoyproxy/envoy",), True),
        ("docker.io/envoyproxy/envoy:v1", ("envoyproxy/envoy",), True),
        ("envoyproxy/envoy-dev:v1", ("docker.io/envoyproxy/envoy",), False),
        ("ghcr.io/atlas-tracking/traccc:1", ("ghcr.io/atlas-tracking/*",), True),
        ("ghcr.io/atlas-tracking-evil/traccc:1", ("ghcr.io/atlas-tracking/*",), False),
        ("ghcr.io/atlas-tracking:1", ("ghcr.io/atlas-tracking/*",), False),
        ("ghcr.io/anyone/anything:1", ("ghcr.io/*",), True),
        ("nvcr.io.evil.example/nvidia/tritonserver:1", ("nvcr.io/nvidia/tritonserver",), False),
        ("evil.example/nvcr.io/nvidia/tritonserver:1", ("nvcr.io/nvidia/tritonserver",), False),
        ("envoyproxy/envoy:v1", ("envoyproxy/*",), True),
        ("nvcr.io/nvidia/tritonserver:1", (), False),
    ],
)
def test_allowed_compares_whole_repositories_or_path_prefixes(
    image: str, entries: tuple[str, ...], ok: bool
) -> None:
    assert allowed(image, entries) is ok


@pytest.mark.parametrize("path", ["/cvmfs", "/mnt/cvmfs", "/cvmfs/"])
def test_cvmfs_host_paths_that_show_only_cvmfs(path: str) -> None:
    assert cvmfs_host_path_problem(path) is None


@pytest.mark.parametrize(
    "path", ["/", "/etc", "/var/run", "/cvmfs/..", "/cvmfs/../etc/cvmfs/..", "cvmfs", "/home"]
)
def test_host_paths_that_would_show_more_of_the_node(path: str) -> None:
    assert cvmfs_host_path_problem(path) is not None


def test_the_pipelines_namespace_is_reserved_and_named_once() -> None:
    assert DEFAULT.namespace == names.PIPELINES_NAMESPACE
    assert names.PIPELINES_NAMESPACE in RESERVED_NAMESPACES
