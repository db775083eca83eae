"""Argo CD: AppProjects, ApplicationSets, sync waves and the PostSync check Job."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config.errors import ConfigErrors
from pipelines.render import render_tree
from pipelines.render.argocd import HOOK, NAMESPACED_KINDS, SYNC_WAVE, render_argocd_site
from pipelines.render.envoy import PROMETHEUS_TOKEN_PATH
from pipelines.render.gitrepo import DEFAULT, load_repository
from tests.render.support import ROOT, all_objects, find, placement, placements, rendered, tree

KIND_GROUPS = {k: g for g, k in NAMESPACED_KINDS}


def _argocd(site: str) -> list[dict]:  # type: ignore[type-arg]
    t = tree()
    return render_argocd_site(
        t.sites[site], dict(t.experiments), dict(t.sites), t.site_deployments(site), DEFAULT
    )


def test_whitelist_is_exactly_what_is_rendered() -> None:
    rendered_kinds = {
        (o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else "", o["kind"]) for _, o in all_objects()
    }
    assert rendered_kinds == set(NAMESPACED_KINDS)


def test_app_project_limits_sources_destinations_and_kinds() -> None:
    projects = {o["metadata"]["name"]: o for o in _argocd("nautilus") if o["kind"] == "AppProject"}
    assert set(projects) == {"atlas", "cms", "icecube"}
    cms = projects["cms"]["spec"]
    assert cms["sourceRepos"] == [DEFAULT.url]
    assert cms["clusterResourceWhitelist"] == []
    assert cms["destinations"] == [
        {"server": "https://anvil.rcac.purdue.edu:6443", "namespace": "cms"},
        {"server": "https://geddes.k8s.rcac.purdue.edu", "namespace": "cms-sonic"},
        {"server": "https://nautilus.optiputer.net:6443", "namespace": "cms"},
        {"server": "https://af.uchicago.edu:6443", "namespace": "cms-af"},
    ]
    assert {(w["group"], w["kind"]) for w in cms["namespaceResourceWhitelist"]} == set(NAMESPACED_KINDS)
    # The same project in every site directory, so a central Argo CD sees no conflict.
    assert find(_argocd("geddes"), "AppProject", "cms")["spec"] == cms


def test_application_set_generates_one_application_per_deployment() -> None:
    appset = find(_argocd("nautilus"), "ApplicationSet")
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert [e["path"] for e in elements] == [
        "gitops/rendered/nautilus/atlas/traccc",
        "gitops/rendered/nautilus/cms/particlenet",
        "gitops/rendered/nautilus/icecube/cnn-classifier",
    ]
    assert len({e["name"] for e in elements}) == len(elements)
    template = appset["spec"]["template"]["spec"]
    assert template["project"] == "{{.experiment}}"
    assert template["destination"] == {
        "server": "https://nautilus.optiputer.net:6443",
        "namespace": "{{.namespace}}",
    }
    assert template["source"]["repoURL"] == DEFAULT.url and template["source"]["path"] == "{{.path}}"
    sync = template["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True}
    assert sync["retry"]["limit"] > 0 and sync["retry"]["backoff"]["factor"] > 1
    assert appset["spec"]["goTemplateOptions"] == ["missingkey=error"]
    # Every element's namespace is the deployment's namespace.
    for e in elements:
        p, _ = placement("nautilus", e["deployment"])
        assert e["namespace"] == p.namespace and e["experiment"] == p.experiment


def test_sync_waves_order_config_triton_envoy_scaler() -> None:
    p, _ = placement("geddes", "particlenet")
    waves = {
        (o["kind"], o["metadata"]["name"]): o["metadata"].get("annotations", {}).get(SYNC_WAVE)
        for o in rendered(p)
    }
    assert waves[("ConfigMap", "particlenet-envoy")] == "0"
    assert waves[("PersistentVolumeClaim", "particlenet-cvmfs")] == "0"
    assert waves[("ServiceAccount", "particlenet-triton")] == "0"
    assert waves[("NetworkPolicy", "particlenet-triton")] == "0"
    assert waves[("Deployment", "particlenet-triton")] == "1"
    assert waves[("Deployment", "particlenet-envoy")] == "2"
    assert waves[("ScaledObject", "particlenet-triton")] == "3"
    assert waves[("Job", "particlenet-check")] is None  # hooks run after the waves


def test_post_sync_job_runs_sonic_check() -> None:
    p, _ = placement("geddes", "particlenet")
    job = find(rendered(p), "Job")
    assert job["metadata"]["annotations"][HOOK] == "PostSync"
    assert "argocd.argoproj.io/hook-delete-policy" in job["metadata"]["annotations"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == DEFAULT.pipeline_image
    assert [c["command"][0], *c["args"]] == [
        "sonic",
        "check",
        "--endpoint",
        "particlenet-envoy.cms-sonic.svc:8001",
        "--site",
        "geddes",
        "--prometheus-token-file",
        PROMETHEUS_TOKEN_PATH,
        "cms/particlenet",
    ]
    q, _ = placement("nautilus", "cnn-classifier")  # JWT: the check sends a token from a Secret
    args = find(rendered(q), "Job")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--token-file" in args and "--prometheus-token-file" not in args


def test_repository_file_is_validated(tmp_path: Path) -> None:
    assert load_repository(ROOT).url.startswith("https://")
    (tmp_path / "gitops").mkdir()
    (tmp_path / "gitops" / "repository.yaml").write_text("url: http://plain.example/repo\nbranch: main\n")
    with pytest.raises(ConfigErrors) as info:
        load_repository(tmp_path)
    text = str(info.value)
    assert "repository.yaml:1:" in text and "pipelineImage" in text
    with pytest.raises(ConfigErrors, match="missing"):
        load_repository(tmp_path / "nowhere")


def test_tree_uses_the_repository_file() -> None:
    t = tree()
    repo = DEFAULT.__class__(
        url="https://git.example.org/fork.git", branch="main", pipeline_image="example.org/sonic:1"
    )
    files = render_tree(t, repo=repo, only={"cms/particlenet"})
    assert "https://git.example.org/fork.git" in files["gitops/argocd/geddes/appproject.yaml"]
    assert "example.org/sonic:1" in files["gitops/rendered/geddes/cms/particlenet/job.yaml"]
    assert all(
        p.name == "particlenet"
        for p, _ in placements()
        if f"gitops/rendered/{p.site}/{p.experiment}/{p.name}/job.yaml" in files
    )
