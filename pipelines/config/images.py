"""Container image references: pinned by digest or by tag only.

A tag (``:24.08-py3``) is a name whoever can push to the registry may point at other content;
a digest (``@sha256:<64 hex>``) names exactly one image. The schemas accept both forms
(``common.schema.json#/$defs/image``); a site may require digests (``requireImageDigests``).
"""

from __future__ import annotations

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
