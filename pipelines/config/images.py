"""Image references compared the way container runtimes resolve them.

A site lists the image repositories deployments may run (``images.triton``, ``images.envoy``).
``envoyproxy/envoy:v1.31`` and ``docker.io/envoyproxy/envoy@sha256:…`` name the same
repository, so both sides are normalised as the Docker reference library does
(github.com/distribution/reference, ``normalize.go``: ``splitDockerDomain``): a first path
component without ``.`` or ``:`` that is not ``localhost`` is a Docker Hub path, and a
single-component Docker Hub name lives under ``library/``.

A reference by tag (``:24.08-py3``) is a name whoever can push to the registry may point at
other content; a digest (``@sha256:<64 hex>``) names exactly one image. The schemas accept both
forms (``common.schema.json#/$defs/image``); a site may require digests (``requireImageDigests``).
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


DIGEST_PREFIX = "@sha256:"


def digest(image: str) -> str | None:
    """``sha256:<hex>`` of a digest-pinned reference, None for a reference by tag only.

    >>> digest("envoyproxy/envoy:distroless-v1.40.0") is None
    True
    >>> digest("envoyproxy/envoy:v1@sha256:" + "0" * 64) == "sha256:" + "0" * 64
    True
    """
    _, sep, hexdigits = image.partition(DIGEST_PREFIX)
    return f"sha256:{hexdigits}" if sep else None


def pinned(image: str) -> bool:
    """Whether ``image`` names its content by digest."""
    return digest(image) is not None
