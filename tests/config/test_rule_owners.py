"""Validation lives in one place: what a renderer refuses, a named semantic rule reports first.

Renderers only guard (``pipelines.render.errors.require``), naming the rule that refuses the
configuration for the user. Each such rule is run here on its own against a corpus case, so a
renderer's guard can never be the only check left: the rule exists, is registered, and reports
the case at the exact field with the corpus's message.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pipelines.config import semantic
from pipelines.config.checked import check_tree
from pipelines.config.errors import display_path
from tests.config.test_invalid import CORPUS, Case

RENDER = Path(semantic.__file__).parents[1] / "render"
NAMED = re.compile(r"semantic\.([a-z_]+)")

# The semantic rules the renderers rely on -> the corpus cases each one reports.
GUARDED: dict[str, tuple[str, ...]] = {
    "gpu_class_known": ("rule-gpu-class-unknown.yaml", "rule-gpu-class-unknown-in-override.yaml"),
    "storage_available": (
        "rule-storage-cvmfs-not-offered.yaml",
        "rule-storage-nfs-not-offered.yaml",
        "rule-storage-pvc-not-offered.yaml",
        "rule-snapshot-storage-not-offered.yaml",
    ),
    "extra_mounts": (),  # no single-file case: a site without CVMFS and a deployment there (below)
    "host_paths": ("rule-cvmfs-host-path-not-cvmfs.yaml", "rule-cvmfs-host-path-above-cvmfs.yaml"),
    "model_has_source": ("rule-model-without-source.yaml",),
    "resources_complete": ("rule-resources-without-memory.yaml", "rule-resources-envoy-without-cpu.yaml"),
    "prometheus_consistency": (
        "rule-autoscaling-without-prometheus.yaml",
        "rule-admission-gate-without-prometheus.yaml",
    ),
    "ingress_hosts": ("rule-ingress-at-site-without-ingress.yaml",),
    "jwt_needs_tls": ("rule-jwt-ingress-without-tls.yaml",),
    "monitoring_stack": ("rule-tracing-without-collector.yaml",),
    "grafana_host_tls": ("rule-grafana-host-without-tls.yaml",),
}


def test_every_rule_a_renderer_names_is_registered_and_covered() -> None:
    named = {
        m for path in sorted(RENDER.rglob("*.py")) for m in NAMED.findall(path.read_text(encoding="utf-8"))
    }
    registered = {rule.__name__ for rule in semantic.RULES}
    assert named, "the renderers' guards name their rules as semantic.<rule>"
    assert named <= registered, f"renderers name rules that do not exist: {sorted(named - registered)}"
    assert named <= set(GUARDED), f"rules without a corpus case here: {sorted(named - set(GUARDED))}"


def test_rule_names_are_unique() -> None:
    names = [rule.__name__ for rule in semantic.RULES]
    assert len(names) == len(set(names))


CASES = [(rule, Case.read(CORPUS / name)) for rule, files in GUARDED.items() for name in files]


@pytest.mark.parametrize(("rule", "case"), CASES, ids=[f"{r}-{c.source.stem}" for r, c in CASES])
def test_the_rule_alone_reports_its_case(
    rule: str, case: Case, example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = example_tree / case.place
    target.parent.mkdir(parents=True, exist_ok=True)
    if case.files is not None:
        shutil.copytree(CORPUS / "files" / case.files, target.parent, dirs_exist_ok=True)
    target.write_bytes(case.source.read_bytes())
    monkeypatch.chdir(example_tree)
    tree, _ = check_tree(example_tree)

    (check,) = [r for r in semantic.RULES if r.__name__ == rule]
    reported = [e for e in check(tree) if e.location.file == case.error_in and e.path == case.path]

    assert any(case.message in e.message for e in reported), [str(e) for e in check(tree)]
    assert display_path(example_tree / case.error_in) == case.error_in


def test_extra_mounts_reports_a_site_without_cvmfs(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(site.read_text().replace("  cvmfs: {hostPath: /cvmfs}\n", ""))
    (example_tree / "experiments" / "cms" / "zz-case.yaml").write_text(
        (CORPUS / "rule-extra-mount-overlap.yaml")
        .read_text()
        .replace("    - {cvmfs: /cvmfs/cms.cern.ch/more, mountPath: /opt/data/more}\n", "")
    )
    monkeypatch.chdir(example_tree)
    tree, _ = check_tree(example_tree)

    reported = [str(e) for e in semantic.extra_mounts(tree)]

    assert reported == [
        "experiments/cms/zz-case.yaml:19:5: triton.extraMounts: site 'uchicago' offers no CVMFS (storage.cvmfs in "
        "gitops/sites/uchicago.yaml): remove the extra mounts here, or ask the site admins to offer CVMFS"
    ]
