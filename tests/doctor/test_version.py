"""The Kubernetes version range: parsing what servers report and comparing by (major, minor)."""

from __future__ import annotations

import pytest

from pipelines.doctor.version import in_range, parse_minor, server_minor, version_finding
from tests.doctor.support import make_site


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.31", (1, 31)),
        ("v1.31.0", (1, 31)),
        ("v1.29.4-eks-036c24b", (1, 29)),
        ("v1.30.2+k3s1", (1, 30)),
        ("1.9", (1, 9)),
        ("latest", None),
        ("", None),
    ],
)
def test_parse_minor(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_minor(text) == expected


def test_server_minor_prefers_git_version_and_survives_managed_clusters() -> None:
    assert server_minor({"gitVersion": "v1.31.0", "major": "1", "minor": "31"}) == (1, 31)
    # GKE/EKS: "31+" in minor; without gitVersion the digits still count.
    assert server_minor({"major": "1", "minor": "31+"}) == (1, 31)
    assert server_minor({}) is None


@pytest.mark.parametrize(
    ("server", "inside"),
    [((1, 28), False), ((1, 29), True), ((1, 30), True), ((1, 31), True), ((1, 32), False), ((2, 0), False)],
)
def test_range_includes_both_ends(server: tuple[int, int], inside: bool) -> None:
    assert in_range(server, "1.29", "1.31") is inside


def test_minor_versions_compare_as_numbers_not_text() -> None:
    assert in_range((1, 10), "1.9", "1.11")
    assert not in_range((1, 9), "1.10", "1.31")


def test_unreadable_bounds_never_match() -> None:
    assert not in_range((1, 30), "one", "1.31")


def test_findings_say_which_side_and_what_to_change() -> None:
    site = make_site()  # 1.29-1.31
    ok = version_finding(site, {"gitVersion": "v1.31.0"})
    assert ok.status == "pass" and "1.31 is within the declared 1.29-1.31" in ok.message
    old = version_finding(site, {"gitVersion": "v1.28.9"})
    assert old.failed and "is older than the declared 1.29-1.31" in old.message
    assert old.fix.startswith("upgrade the cluster") and "gitops/sites/testsite.yaml" in old.fix
    new = version_finding(site, {"gitVersion": "v1.33.1"})
    assert new.failed and "is newer than" in new.message
    assert "kubernetes.minVersion/maxVersion" in new.fix
    junk = version_finding(site, {"gitVersion": "weird"})
    assert junk.failed and "cannot read the server version" in junk.message
