"""Image references compared the way container runtimes resolve them.

A site lists the image repositories deployments may run (``images.triton``, ``images.envoy``).
``envoyproxy/envoy:v1.31`` and ``docker.io/envoyproxy/envoy@sha256:…`` name the same
repository, so both sides are normalised as the Docker reference library does
(github.com/distribution/reference, ``normalize.go``: ``splitDockerDomain``): a first path
component without ``.`` or ``:`` that is not ``localhost`` is a Docker Hub path, and a
single-component Docker Hub name lives under ``library/``.
"""

from __future__ import annotations

DOCKER_HUB = "docker.io"


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        return DOCKER_HUB, name
    return ("docker.io" if first == "index.docker.io" else first), rest


def repository(image: str) -> str:
    """The full repository of an image reference: no tag, no digest, registry spelled out."""
    name = image.split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    domain, path = _split_domain(name)
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{domain}/{path}"


def allowed(image: str, entries: tuple[str, ...]) -> bool:
    """Whether ``image`` comes from a repository of ``entries`` (a repository, or ``prefix/*``)."""
    repo = repository(image)
    for entry in entries:
        if entry.endswith("/*"):
            base = entry[:-2]
            if "/" not in base and ("." in base or ":" in base or base == "localhost"):
                prefix = f"{base}/"  # a whole registry, such as ghcr.io/*
            else:
                domain, path = _split_domain(base)
                prefix = f"{domain}/{path}/"
            if repo.startswith(prefix):
                return True
        elif repo == repository(entry):
            return True
    return False
