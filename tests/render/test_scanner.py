"""A third-party scanner over a fresh render: checkov's kubernetes checks find nothing unaccepted.

checkov runs from its own virtualenv (``make scanner``, scripts/scanner.sh) as a subprocess over
every example deployment at every site, the Argo CD objects and the pipelines' objects, written
to a temporary directory. Every finding must be fixed in the renderers or accepted, on the exact
object it concerns, by a ``checkov.io/skip<N>`` annotation (pipelines/render/scanner.py). The
same tree without those annotations must produce exactly the accepted findings: so the scanner
can fail here, and no acceptance outlives its finding.

Besides the examples (all pinned by tag: their digests cannot be looked up offline) the tree holds
one deployment whose images are pinned by digest and whose Triton runs as a high UID: it gets no
suppression for those checks and passes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import Placement, Site
from pipelines.config.repository import DEFAULT, Repository
from pipelines.render import render_site_deployment
from pipelines.render.argocd import render_argocd_site
from pipelines.render.scanner import ACCEPTED, SKIP_ANNOTATION, image_checks, skip_annotations, uid_checks
from pipelines.render.yamlout import dump_all
from pipelines.workflows import files as workflows
from tests.render.support import ROOT, inputs_for, placement, placements, tree

CONFIG = ROOT / ".checkov.yaml"
SECURITY_DOC = ROOT / "docs" / "security.md"
DIGEST = "@sha256:" + "0123456789abcdef" * 4  # well-formed; never pulled
PINNED_NAME = "pinned"


def _checkov() -> Path | None:
    """checkov from SONIC_CHECKOV, the scanner virtualenv, or PATH."""
    for candidate in (os.environ.get("SONIC_CHECKOV"), str(ROOT / ".venv-scan" / "bin" / "checkov")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("checkov")
    return Path(found) if found else None


def _pinned() -> tuple[Placement, Site, Repository]:
    """The CPU demo at uchicago with every image pinned by digest and Triton at a high UID."""
    p, site = placement("uchicago", "minimal")
    pinned = p.model_copy(
        update={
            "name": PINNED_NAME,
            "triton": p.triton.model_copy(update={"image": p.triton.image + DIGEST, "run_as_user": 20000}),
            "envoy": p.envoy.model_copy(update={"image": p.envoy.image + DIGEST}),
        }
    )
    repo = Repository(url=DEFAULT.url, branch=DEFAULT.branch, pipeline_image=DEFAULT.pipeline_image + DIGEST)
    return pinned, site, repo


def _strip(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects without their scanner suppressions."""
    prefix = SKIP_ANNOTATION.format(n="")
    for obj in objs:
        annotations = obj["metadata"].get("annotations", {})
        for key in [k for k in annotations if k.startswith(prefix)]:
            del annotations[key]
    return objs


def write_tree(dest: Path, *, suppressions: bool = True) -> Path:
    """A fresh render of the examples (+ the pinned variant), Argo CD and pipelines under ``dest``."""
    t = tree()
    pinned, pinned_site, pinned_repo = _pinned()
    deployments = [(p, s, DEFAULT) for p, s in placements()] + [(pinned, pinned_site, pinned_repo)]
    for p, site, repo in deployments:
        objs = render_site_deployment(p, site, inputs_for(p), repo=repo)
        if not suppressions:
            objs = _strip(objs)
        out = dest / "rendered" / p.site / p.experiment / f"{p.name}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dump_all(objs))
    for name, site in sorted(t.sites.items()):
        argo = render_argocd_site(site, dict(t.experiments), dict(t.sites), t.placements_at(name), DEFAULT)
        (dest / "argocd").mkdir(parents=True, exist_ok=True)
        (dest / "argocd" / f"{name}.yaml").write_text(dump_all(argo))
    for name, text in workflows.render(t).items():
        (dest / "workflows").mkdir(parents=True, exist_ok=True)
        (dest / "workflows" / name).write_text(text)
    return dest


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report of ``directory`` with the repository's settings (.checkov.yaml)."""
    binary = _checkov()
    if binary is None:
        pytest.skip("checkov is not installed: run `make scanner` (scripts/scanner.sh creates .venv-scan)")
    result = subprocess.run(
        [str(binary), "--config-file", str(CONFIG), "--directory", str(directory), "--output", "json"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    kubernetes = [r for r in reports if r.get("check_type") == "kubernetes"]
    assert len(kubernetes) == 1, f"no kubernetes report in checkov's output:\n{result.stdout[:2000]}"
    found: dict[str, Any] = kubernetes[0]
    return found


def _findings(entries: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["check_id"], e["resource"]) for e in entries}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_checkov(write_tree(tmp_path_factory.mktemp("scan")))


@pytest.fixture(scope="module")
def scanned_without_suppressions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_checkov(write_tree(tmp_path_factory.mktemp("scan-bare"), suppressions=False))


@pytest.mark.scanner
def test_the_scanner_finds_nothing_unaccepted(scanned: dict[str, Any]) -> None:
    summary = scanned["summary"]
    assert summary["parsing_errors"] == 0
    # Deployments, Services, ConfigMaps, ... of 8 placements, plus the pipelines' accounts and RBAC.
    assert summary["resource_count"] > 150, summary
    failed = sorted(
        f"{e['check_id']} {e['check_name']}: {e['resource']} ({e['file_path']})"
        for e in scanned["results"]["failed_checks"]
    )
    assert not failed, "unaccepted scanner findings (fix the renderer, or accept in "
    "pipelines/render/scanner.py and docs/security.md):\n" + "\n".join(failed)
    assert summary["passed"] > 1000, summary


@pytest.mark.scanner
def test_only_the_listed_checks_are_accepted_each_with_its_reason(scanned: dict[str, Any]) -> None:
    skipped = scanned["results"]["skipped_checks"]
    assert skipped
    for entry in skipped:
        assert entry["check_id"] in ACCEPTED, entry["check_id"]
        assert entry["check_result"]["suppress_comment"].startswith(ACCEPTED[entry["check_id"]])
    # The digest-pinned, high-UID deployment keeps only the two findings that are not about images.
    pinned = defaultdict(set)
    for check, resource in _findings(skipped):
        if f".{PINNED_NAME}-" in resource:
            pinned[resource].add(check)
    assert dict(pinned) == {
        f"Deployment.cms-af.{PINNED_NAME}-triton": {"CKV_K8S_22", "CKV_K8S_35"},
        f"Deployment.cms-af.{PINNED_NAME}-envoy": {"CKV_K8S_35"},
    }


@pytest.mark.scanner
def test_every_accepted_finding_is_real(
    scanned: dict[str, Any], scanned_without_suppressions: dict[str, Any]
) -> None:
    """Without the annotations checkov fails exactly what they accept: the scan can fail, and no
    acceptance is stale."""
    accepted = _findings(scanned["results"]["skipped_checks"])
    failed = _findings(scanned_without_suppressions["results"]["failed_checks"])
    assert failed == accepted
    assert {check for check, _ in failed} == set(ACCEPTED)


# --- the suppressions themselves (no scanner needed) ---------------------------------------------


def test_image_suppressions_only_for_images_by_tag() -> None:
    tagged = "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert image_checks(tagged) == ("CKV_K8S_15", "CKV_K8S_43")
    assert image_checks(tagged + DIGEST) == ()
    assert image_checks(tagged + DIGEST, "envoyproxy/envoy:v1") == ("CKV_K8S_15", "CKV_K8S_43")
    assert uid_checks(1000) == ("CKV_K8S_40",) and uid_checks(10000) == ()


def test_suppression_annotations_are_numbered_and_parse_as_checkov_reads_them() -> None:
    annotations = skip_annotations("CKV_K8S_43", "CKV_K8S_22", "CKV_K8S_43")
    assert list(annotations) == ["checkov.io/skip1", "checkov.io/skip2"]
    for value in annotations.values():
        # checkov: `(id, comment) = value.split("=")`; a second "=" would crash its parser.
        check, reason = value.split("=")
        assert reason.startswith(ACCEPTED[check])


def test_the_rendered_suppressions_follow_the_images() -> None:
    pinned, site, repo = _pinned()
    for p, s, r in ((*placement("uchicago", "minimal"), DEFAULT), (pinned, site, repo)):
        objs = {
            (o["kind"], o["metadata"]["name"]): o for o in render_site_deployment(p, s, inputs_for(p), repo=r)
        }
        checks = {
            key: {v.split("=")[0] for k, v in o["metadata"].get("annotations", {}).items() if "checkov" in k}
            for key, o in objs.items()
        }
        images = set() if p.name == PINNED_NAME else {"CKV_K8S_15", "CKV_K8S_43"}
        uid = set() if p.name == PINNED_NAME else {"CKV_K8S_40"}
        assert checks[("Deployment", f"{p.name}-triton")] == {"CKV_K8S_22", "CKV_K8S_35"} | images | uid
        assert checks[("Deployment", f"{p.name}-envoy")] == {"CKV_K8S_35"} | images
        assert checks[("Job", f"{p.name}-check")] == images
        assert not any(v for k, v in checks.items() if k[0] not in ("Deployment", "Job"))


def test_the_security_doc_lists_exactly_the_accepted_checks() -> None:
    text = SECURITY_DOC.read_text()
    section = text.split("## Scanner findings", 1)[1].split("\n## ", 1)[0]
    accepted_table = section.split("### Accepted", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"^\| `(CKV2?_K8S_\d+)` \|", accepted_table, flags=re.M))
    assert listed == set(ACCEPTED)
