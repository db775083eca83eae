"""Is the cluster's Kubernetes inside the range the site file declares?

The renderer validates every manifest against the oldest and newest declared version
(``kubernetes.minVersion`` / ``maxVersion``), so a cluster outside that range runs objects nobody
validated for it. Versions compare by (major, minor): patch releases never change the API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipelines.config.model import Site
from pipelines.doctor.result import Finding, failed, passed
from pipelines.doctor.text import site_file

CHECK = "kubernetes.version"
_MINOR = re.compile(r"v?(\d+)\.(\d+)")


def parse_minor(text: str) -> tuple[int, int] | None:
    """``"1.31"``, ``"v1.31.0"``, ``"v1.29.4-eks-036c24b"`` -> (1, 31) / (1, 29); None if unreadable."""
    m = _MINOR.match(text.strip())
    return (int(m[1]), int(m[2])) if m else None


def server_minor(version: Mapping[str, Any]) -> tuple[int, int] | None:
    """(major, minor) of a /version answer.

    ``gitVersion`` first: managed clusters put a ``+`` in ``minor`` ("31+" on GKE and EKS).
    """
    parsed = parse_minor(str(version.get("gitVersion", "")))
    if parsed is not None:
        return parsed
    major = re.match(r"\d+", str(version.get("major", "")))
    minor = re.match(r"\d+", str(version.get("minor", "")))
    return (int(major[0]), int(minor[0])) if major and minor else None


def in_range(server: tuple[int, int], low: str, high: str) -> bool:
    """Whether ``server`` lies in [low, high], both ends included; unreadable bounds never match."""
    lo, hi = parse_minor(low), parse_minor(high)
    return lo is not None and hi is not None and lo <= server <= hi


def version_finding(site: Site, version: Mapping[str, Any]) -> Finding:
    """The verdict on one /version answer (pure: the check below only fetches it)."""
    low, high = site.kubernetes.min_version, site.kubernetes.max_version
    declared = f"{low}-{high}"
    git = str(version.get("gitVersion") or f"{version.get('major')}.{version.get('minor')}")
    server = server_minor(version)
    if server is None:
        return failed(
            CHECK,
            git,
            f"cannot read the server version from /version ({dict(version)})",
            "check that the kubeconfig points at a Kubernetes API server",
        )
    if in_range(server, low, high):
        return passed(CHECK, git, f"Kubernetes {server[0]}.{server[1]} is within the declared {declared}")
    lowest = parse_minor(low)
    side = "older" if lowest is not None and server < lowest else "newer"
    return failed(
        CHECK,
        git,
        f"Kubernetes {server[0]}.{server[1]} is {side} than the declared {declared}: the manifests were "
        "validated for that range only",
        f"{'upgrade' if side == 'older' else 'check the manifests against'} the cluster, or set "
        f"kubernetes.minVersion/maxVersion in {site_file(site)} to include {server[0]}.{server[1]} and run "
        "sonic validate and sonic render",
    )


def check_version(cluster: Any, site: Site) -> list[Finding]:
    return [version_finding(site, cluster.version())]
