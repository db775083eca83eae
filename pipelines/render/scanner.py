"""Findings of the third-party manifest scanner that are accepted on purpose, and where.

CI runs [checkov](https://www.checkov.io/) (kubernetes framework) over a fresh render
(``tests/render/test_scanner.py``) and fails on any finding. Every finding that the renderers
do not fix is accepted here, on exactly the objects it concerns, as checkov's own suppression
annotation on the object's metadata: ``checkov.io/skip<N>: <check id>=<reason>``. So a finding
on any other object (an Envoy whose root filesystem became writable, a new container) still
fails CI, and a deployment that pins its images by digest gets no image suppression at all.

docs/security.md ("Scanner findings") explains each accepted check at length; a test keeps its
table and :data:`ACCEPTED` in step.
"""

from __future__ import annotations

from pipelines.config.images import pinned

SKIP_ANNOTATION = "checkov.io/skip{n}"

# Check id -> the reason rendered next to it (short: it is repeated on every object it covers;
# checkov splits the annotation value at "=", so a reason never contains one).
ACCEPTED: dict[str, str] = {
    "CKV_K8S_15": "image by tag only (IfNotPresent survives a registry outage); pin a digest to fix",
    "CKV_K8S_22": "Triton's backends write outside /tmp",
    "CKV_K8S_35": "the Triton management key reaches Triton's command line and Envoy's route by env",
    "CKV_K8S_38": "the in-namespace Prometheus discovers its targets through the API (a namespaced Role)",
    "CKV_K8S_40": "runs as the image's own non-root user, a UID below 10000",
    "CKV_K8S_43": "image by tag only; pin image@sha256:<digest> to fix (a site may require it)",
}

HIGH_UID = 10000  # checkov CKV_K8S_40 wants runAsUser >= this (no clash with host accounts)


def image_checks(*images: str) -> tuple[str, ...]:
    """The image checks to accept on a pod running ``images``: none when all are digest-pinned."""
    return () if all(pinned(i) for i in images) else ("CKV_K8S_15", "CKV_K8S_43")


def uid_checks(run_as_user: int) -> tuple[str, ...]:
    """CKV_K8S_40 for a pod that runs as a UID below :data:`HIGH_UID`."""
    return ("CKV_K8S_40",) if run_as_user < HIGH_UID else ()


def skip_annotations(*check_ids: str) -> dict[str, str]:
    """``checkov.io/skip1..N`` annotations accepting ``check_ids`` (sorted) with their reasons."""
    return {
        SKIP_ANNOTATION.format(n=n): f"{check}={ACCEPTED[check]} (docs/security.md)"
        for n, check in enumerate(sorted(set(check_ids)), start=1)
    }
