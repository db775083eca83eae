"""Argo CD: AppProjects, ApplicationSets (git files generator), sync waves, the PostSync check Job and its spec."""

from __future__ import annotations

import atexit
import base64
import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from pipelines.config import load_tree, names
from pipelines.config.errors import ConfigErrors
from pipelines.config.repository import DEFAULT, load_repository
from pipelines.ops.rollout_target import target as rollout_target
from pipelines.render import RenderError, read_inputs, render_site_deployment, render_tree
from pipelines.render.argocd import (
    APPLICATION_FILE,
    CHECK_SPEC_DIR,
    CONFIGMAP_LIMIT,
    HOOK,
    NAMESPACED_KINDS,
    RESOURCES_FINALIZER,
    SYNC_WAVE,
    render_argocd_site,
)
from pipelines.render.envoy.gate import PROMETHEUS_TOKEN_PATH
from pipelines.render.inputs import read_deployment_inputs
from tests.conftest import FIXTURE
from tests.render.support import (
    CRDS,
    all_objects,
    crd_schema,
    find,
    ident,
    inputs_for,
    placement,
    placements,
    pods,
    rendered,
    tree,
)

KIND_GROUPS = {k: g for g, k in NAMESPACED_KINDS}


def _argocd(site: str) -> list[dict]:  # type: ignore[type-arg]
    t = tree()
    return render_argocd_site(
        t.sites[site], dict(t.experiments), dict(t.sites), t.placements_at(site), DEFAULT
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


def test_application_set_reads_the_gitops_branch() -> None:
    appset = find(_argocd("nautilus"), "ApplicationSet")
    assert appset["spec"]["generators"] == [
        {
            "git": {
                "repoURL": DEFAULT.url,
                "revision": DEFAULT.branch,
                "files": [{"path": "gitops/rendered/nautilus/*/*/application.json"}],
            }
        }
    ]
    template = appset["spec"]["template"]["spec"]
    # The project is the experiment folder of the file's path, never a value of the file.
    assert template["project"] == "{{index .path.segments 3}}"
    assert template["destination"] == {
        "server": "https://nautilus.optiputer.net:6443",
        "namespace": "{{.namespace}}",
    }
    # The source is the directory holding the file, on the same branch the generator reads.
    assert template["source"] == {
        "repoURL": DEFAULT.url,
        "targetRevision": DEFAULT.branch,
        "path": "{{.path.path}}",
    }
    sync = template["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True}
    assert sync["retry"]["limit"] > 0 and sync["retry"]["backoff"]["factor"] > 1
    assert appset["spec"]["goTemplateOptions"] == ["missingkey=error"]
    # Applications are deleted with their directory, and take their objects with them.
    assert appset["spec"]["syncPolicy"] == {"applicationsSync": "sync", "preserveResourcesOnDeletion": False}
    assert appset["spec"]["template"]["metadata"]["finalizers"] == [RESOURCES_FINALIZER]


EVALUATOR = Path(__file__).parent / "applicationset_eval" / "main.go"


@functools.cache
def _evaluator() -> Path:
    """The Go program that generates Applications as Argo CD does (built once per session)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: the ApplicationSet evaluator is a Go program")
    scratch = tempfile.mkdtemp(prefix="sonic-appset-eval-")
    atexit.register(shutil.rmtree, scratch, True)
    out = Path(scratch) / "appset_eval"
    subprocess.run(
        [go, "build", "-o", str(out), str(EVALUATOR)], check=True, capture_output=True, timeout=600
    )
    return out


def _generate(files: dict[str, str], appset: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Applications (and generation errors) of the ApplicationSet over a rendered tree on the GitOps branch.

    Go's text/template with the ApplicationSet's goTemplateOptions, on the parameters Argo CD's
    git files generator builds (tests/render/applicationset_eval/main.go says what is reproduced).
    """
    (generator,) = appset["spec"]["generators"]
    (pattern,) = [f["path"] for f in generator["git"]["files"]]
    request = {
        "template": appset["spec"]["template"],
        "options": appset["spec"].get("goTemplateOptions", []),
        "pattern": pattern,
        "files": files,
    }
    proc = subprocess.run(
        [str(_evaluator())], input=json.dumps(request), capture_output=True, text=True, check=True, timeout=60
    )
    answer = json.loads(proc.stdout)
    apps = [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {**app["metadata"], "namespace": "argocd"},
            "spec": app["spec"],
        }
        for app in answer["applications"]
    ]
    return apps, answer["errors"]


def _generated_applications(files: dict[str, str], appset: dict[str, Any]) -> list[dict[str, Any]]:
    """What the ApplicationSet makes of a rendered tree published to the GitOps branch (no errors allowed)."""
    apps, errors = _generate(files, appset)
    assert errors == []
    return apps


def test_application_set_generates_what_the_rollout_waits_for() -> None:
    """Every rendered directory becomes exactly the Application `sonic rollout` waits for."""
    t = tree()
    files = render_tree(t, read_inputs(t))
    for site in sorted(t.sites):
        appset = find(_argocd(site), "ApplicationSet")
        apps = _generated_applications(files, appset)
        expected = {names.application_name(p): p for p in t.placements_at(site)}
        assert sorted(a["metadata"]["name"] for a in apps) == sorted(expected)
        for app in apps:
            p = expected[app["metadata"]["name"]]
            target = rollout_target(t, site, names.deployment_ref(p))
            assert app["metadata"]["name"] == target.application
            assert app["spec"]["source"]["path"] == target.path == names.rendered_dir(p)
            assert app["spec"]["project"] == p.experiment
            assert app["spec"]["destination"] == {
                "server": t.sites[site].argocd.server,
                "namespace": p.namespace,
            }
            assert app["metadata"]["labels"]["sonic.fastml.org/deployment"] == p.name
            if CRDS.is_dir():
                errors = list(Draft7Validator(crd_schema("Application", "v1alpha1")).iter_errors(app))
                assert not errors, [e.message for e in errors]


def test_application_file_is_never_applied() -> None:
    files = render_tree(tree(), read_inputs(tree()))
    directories = {path.rsplit("/", 1)[0] for path in files if path.startswith("gitops/rendered/")}
    for directory in directories:
        kustomization = yaml.safe_load(files[f"{directory}/kustomization.yaml"])
        assert APPLICATION_FILE not in kustomization["resources"]
        # A namespace's quota directory is the site admins' to apply: no Application for it.
        is_namespace = f"/{names.NAMESPACES_DIR}/" in directory
        assert (f"{directory}/{APPLICATION_FILE}" in files) != is_namespace


def test_deployments_come_and_go_without_touching_the_argocd_tree(example_tree: Path) -> None:
    """A removed deployment loses its directory (so its Application); gitops/argocd stays byte-identical."""
    t = load_tree(example_tree)
    before = render_tree(t, read_inputs(t))
    (example_tree / "experiments" / "atlas" / "traccc.yaml").unlink()
    t = load_tree(example_tree)
    after = render_tree(t, read_inputs(t))
    assert "gitops/rendered/nautilus/atlas/traccc/application.json" in before
    assert not any(path.startswith("gitops/rendered/nautilus/atlas/traccc/") for path in after)
    argocd = {k: v for k, v in before.items() if k.startswith("gitops/argocd/")}
    assert argocd == {k: v for k, v in after.items() if k.startswith("gitops/argocd/")}
    appset = find(_argocd("nautilus"), "ApplicationSet")
    gone = {a["metadata"]["name"] for a in _generated_applications(before, appset)} - {
        a["metadata"]["name"] for a in _generated_applications(after, appset)
    }
    assert gone == {"nautilus-atlas-traccc"}


def test_a_tampered_application_file_chooses_neither_project_nor_name() -> None:
    """Issue 11, finding 11: the project and the name come from the directory, not the file."""
    files = render_tree(tree(), read_inputs(tree()))
    appset = find(_argocd("nautilus"), "ApplicationSet")
    mine = "gitops/rendered/nautilus/cms/particlenet"
    tampered = {
        "name": "nautilus-atlas-traccc",
        "project": "atlas",
        "experiment": "atlas",
        "deployment": "traccc",
        "site": "nautilus",
        "namespace": "atlas-sonic",
        "path": {"path": "gitops/rendered/nautilus/atlas/traccc", "basename": "traccc", "segments": []},
    }
    files[f"{mine}/{APPLICATION_FILE}"] = json.dumps(tampered)
    apps = {a["metadata"]["name"]: a for a in _generated_applications(files, appset)}
    app = apps["nautilus-cms-particlenet"]
    assert app["spec"]["project"] == "cms"
    assert app["spec"]["source"]["path"] == mine
    assert app["metadata"]["labels"]["sonic.fastml.org/experiment"] == "cms"
    assert app["metadata"]["labels"]["sonic.fastml.org/deployment"] == "particlenet"
    assert apps["nautilus-atlas-traccc"]["spec"]["project"] == "atlas"  # the real one, untouched
    # The namespace is the one value still read from the file: the cms project does not admit
    # atlas-sonic at any server, so Argo CD refuses to sync there (docs/security.md).
    cms = find(_argocd("nautilus"), "AppProject", "cms")["spec"]["destinations"]
    assert app["spec"]["destination"]["namespace"] == "atlas-sonic"
    assert all(d["namespace"] != "atlas-sonic" for d in cms)

    # Negative control: the previous template, which read the project from the file.
    old = {
        **appset,
        "spec": {**appset["spec"], "template": json.loads(json.dumps(appset["spec"]["template"]))},
    }
    old["spec"]["template"]["spec"]["project"] = "{{.project}}"
    old["spec"]["template"]["metadata"]["name"] = "{{.name}}"
    old_apps, errors = _generate(files, old)
    assert errors == ["contains applications with duplicate name: nautilus-atlas-traccc"]  # took a name
    files[f"{mine}/{APPLICATION_FILE}"] = json.dumps({**tampered, "name": "nautilus-cms-particlenet"})
    old_apps, errors = _generate(files, old)
    assert [a["spec"]["project"] for a in old_apps if a["spec"]["source"]["path"] == mine] == ["atlas"]


def test_an_application_file_listing_several_objects_makes_no_second_application() -> None:
    """The generator accepts an array of objects per file; each yields the same path-derived name."""
    files = render_tree(tree(), read_inputs(tree()))
    appset = find(_argocd("nautilus"), "ApplicationSet")
    mine = "gitops/rendered/nautilus/cms/particlenet"
    one = json.loads(files[f"{mine}/{APPLICATION_FILE}"])
    files[f"{mine}/{APPLICATION_FILE}"] = json.dumps([one, {**one, "namespace": "icecube-sonic"}])
    apps, errors = _generate(files, appset)
    assert [a["metadata"]["name"] for a in apps].count("nautilus-cms-particlenet") == 1
    assert errors == ["contains applications with duplicate name: nautilus-cms-particlenet"]


def test_colliding_application_names_are_real_for_argo_cd() -> None:
    """Why validation refuses cms/mini-mal beside cms-mini/mal: Argo CD would keep only one."""
    appset = find(_argocd("nautilus"), "ApplicationSet")
    files = {
        "gitops/rendered/nautilus/cms/mini-mal/application.json": json.dumps({"namespace": "cms"}),
        "gitops/rendered/nautilus/cms-mini/mal/application.json": json.dumps({"namespace": "cms-mini"}),
    }
    apps, errors = _generate(files, appset)
    assert [a["metadata"]["name"] for a in apps] == ["nautilus-cms-mini-mal"]
    assert errors == ["contains applications with duplicate name: nautilus-cms-mini-mal"]


def test_a_file_without_the_namespace_fails_the_generation() -> None:
    """missingkey=error: no Application with an empty destination namespace."""
    appset = find(_argocd("nautilus"), "ApplicationSet")
    files = {"gitops/rendered/nautilus/cms/x/application.json": json.dumps({"name": "nautilus-cms-x"})}
    apps, errors = _generate(files, appset)
    assert apps == [] and len(errors) == 1 and 'map has no entry for key "namespace"' in errors[0]


def test_sync_waves_order_config_triton_envoy_scaler() -> None:
    p, _ = placement("geddes", "particlenet")
    waves = {
        (o["kind"], o["metadata"]["name"]): o["metadata"].get("annotations", {}).get(SYNC_WAVE)
        for o in rendered(p)
    }
    assert waves[("ConfigMap", "particlenet-envoy")] == "0"
    assert waves[("PersistentVolumeClaim", "particlenet-cvmfs")] == "1"  # with its consumer
    assert waves[("ServiceAccount", "particlenet-triton")] == "0"
    assert waves[("NetworkPolicy", "particlenet-triton")] == "0"
    assert waves[("Deployment", "particlenet-triton")] == "1"
    assert waves[("Deployment", "particlenet-envoy")] == "2"
    assert waves[("ScaledObject", "particlenet-triton")] == "3"
    assert waves[("Job", "particlenet-check")] is None  # hooks run after the waves


def _claims_mounted(obj: dict[str, Any]) -> set[str]:
    spec = pods(obj) or {}
    return {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes", [])
        if "persistentVolumeClaim" in v
    }


def _waves_finish(objs: list[dict[str, Any]]) -> bool:
    """Argo CD's wave loop with a WaitForFirstConsumer StorageClass: does every wave end?

    gitops-engine pkg/sync/sync_context.go applies one wave and starts the next only when every
    object of it is Healthy; pkg/health/health_pvc.go calls a Pending claim Progressing; a
    WaitForFirstConsumer claim stays Pending until a pod that mounts it has been created. The
    workloads themselves are taken to become Healthy (their claims permitting).
    """
    waves = sorted(
        {
            int(o["metadata"]["annotations"][SYNC_WAVE])
            for o in objs
            if SYNC_WAVE in o["metadata"].get("annotations", {})
        }
    )
    applied: list[dict[str, Any]] = []
    for wave in waves:
        applied += [o for o in objs if o["metadata"].get("annotations", {}).get(SYNC_WAVE) == str(wave)]
        consumed = set().union(*(_claims_mounted(o) for o in applied))
        pending = [
            o
            for o in applied
            if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] not in consumed
        ]
        if pending:
            return False
    return True


def test_claims_sync_with_their_consumers_so_waves_never_deadlock() -> None:
    """Every rendered claim is in the wave of the pods that mount it (issue 10, defect 14)."""
    checked = 0
    for p, _ in placements():
        objs = rendered(p)
        for claim in (o for o in objs if o["kind"] == "PersistentVolumeClaim"):
            consumers = [o for o in objs if claim["metadata"]["name"] in _claims_mounted(o)]
            assert consumers, f"{ident(p)}: nothing mounts {claim['metadata']['name']}"
            waves = {o["metadata"]["annotations"][SYNC_WAVE] for o in [claim, *consumers]}
            assert len(waves) == 1, f"{ident(p)}: claim and consumers in waves {sorted(waves)}"
            checked += 1
        assert _waves_finish(objs), ident(p)
    assert checked  # the examples do render CVMFS claims


def test_a_claim_in_an_earlier_wave_than_its_consumer_deadlocks() -> None:
    """The wave model above can fail: the old layout (claim in wave 0, Triton in 1) never ends."""
    p, _ = placement("geddes", "particlenet")
    objs = rendered(p)
    claim = find(objs, "PersistentVolumeClaim")
    claim["metadata"]["annotations"][SYNC_WAVE] = "0"
    assert not _waves_finish(objs)


def test_post_sync_job_runs_sonic_check_from_its_spec() -> None:
    p, _ = placement("geddes", "particlenet")
    job = find(rendered(p), "Job")
    assert job["metadata"]["annotations"][HOOK] == "PostSync"
    assert "argocd.argoproj.io/hook-delete-policy" in job["metadata"]["annotations"]
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == DEFAULT.pipeline_image
    assert [c["command"][0], *c["args"]] == [
        "sonic",
        "check",
        "--spec",
        f"{CHECK_SPEC_DIR}/deployment.json",
        "--endpoint",
        "particlenet-envoy.cms-sonic.svc:8001",
        "--prometheus",
        "https://prometheus-af.geddes.rcac.purdue.edu",
        "--prometheus-token-file",
        PROMETHEUS_TOKEN_PATH,
    ]
    # The spec comes from the deployment's own ConfigMap, mounted read-only.
    assert {"name": "check-spec", "mountPath": CHECK_SPEC_DIR, "readOnly": True} in c["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "check-spec")
    assert volume["configMap"]["name"] == "particlenet-check"
    assert find(rendered(p), "ConfigMap", "particlenet-check")
    # JWT (issue 10.10): the check gets a fresh token with the client credentials of a Secret
    # (all its keys mounted: scope and audience are optional), never a stored, expiring token.
    q, _ = placement("nautilus", "cnn-classifier")
    job_pod = find(rendered(q), "Job")["spec"]["template"]["spec"]
    args = job_pod["containers"][0]["args"]
    assert args[args.index("--client-credentials") + 1] == "/var/run/sonic/check-client"
    assert "--token-file" not in args and "--prometheus-token-file" not in args
    client = next(v for v in job_pod["volumes"] if v["name"] == "check-client")
    # The deployment's own client (issue 11, finding 14): no Secret shared by JWT deployments.
    assert client["secret"] == {"secretName": "cnn-classifier-check-client", "defaultMode": 0o440}
    assert names.check_client_secret(q) == "cnn-classifier-check-client"


def test_check_spec_config_map_holds_the_deployment_and_its_references() -> None:
    p, _ = placement("uchicago", "minimal")
    cm = find(rendered(p), "ConfigMap", "minimal-check")
    assert cm["metadata"]["annotations"][SYNC_WAVE] == "0"  # with the other ConfigMaps, before the hook
    assert cm["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "ServerSideApply=true"
    doc = json.loads(cm["data"]["deployment.json"])
    refs = [c["reference"] for c in doc["deployment"]["checks"]["models"] if c.get("reference")]
    assert refs and all("/" not in r["inputs"] and "/" not in r["outputs"] for r in refs)
    assert sorted(cm["binaryData"]) == sorted({n for r in refs for n in (r["inputs"], r["outputs"])})
    declared = p.checks.models[0].reference
    assert declared is not None
    assert (
        base64.b64decode(cm["binaryData"][refs[0]["outputs"]])
        == (p.source.parent / declared.outputs).read_bytes()
    )
    # Deployments without reference files carry the spec alone.
    q, _ = placement("geddes", "particlenet")
    assert "binaryData" not in find(rendered(q), "ConfigMap", "particlenet-check")


def _minimal_of(root: Path) -> tuple[Any, Any]:
    t = load_tree(root)
    p = t.deployment("cms/minimal").placements[0]
    return p, t.sites[p.site]


def test_check_spec_over_a_mebibyte_is_refused(example_tree: Path) -> None:
    # Validation refuses a reference file over 1 MiB (MAX_REFERENCE_BYTES); the renderer guards
    # the ConfigMap's limit itself, for files that changed after validation.
    p, site = _minimal_of(example_tree)
    (example_tree / "experiments" / "cms" / "checks" / "btag_mini_outputs.npz").write_bytes(
        b"\0" * CONFIGMAP_LIMIT
    )
    with pytest.raises(RenderError) as info:
        render_site_deployment(p, site, inputs_for(p))
    text = str(info.value)
    assert "experiments/cms/minimal.yaml" in text and "minimal-check" in text and "1 MiB" in text
    assert "checks.models[].reference" in text


def test_unreadable_reference_file_is_a_render_error(example_tree: Path) -> None:
    # Validation already refuses a missing file; this is one that vanished after it. It is read
    # at the edge (read_inputs), and render_tree reports it with the other deployments' problems.
    t = load_tree(example_tree)
    (example_tree / "experiments" / "cms" / "checks" / "btag_mini_inputs.npz").unlink()
    unreadable = r"btag_mini_inputs\.npz: reference file .* cannot be read"
    with pytest.raises(RenderError, match=unreadable):
        read_deployment_inputs(t.deployment("cms/minimal").placements[0], None)
    with pytest.raises(RenderError, match=unreadable) as info:
        render_tree(t, read_inputs(t))
    assert {problem.deployment for problem in info.value.problems} == {"cms/minimal"}


def test_repository_file_is_validated(tmp_path: Path) -> None:
    assert load_repository(FIXTURE).url.startswith("https://")
    (tmp_path / "gitops").mkdir()
    (tmp_path / "gitops" / "repository.yaml").write_text("url: http://plain.example/repo\nbranch: main\n")
    with pytest.raises(ConfigErrors) as info:
        load_repository(tmp_path)
    text = str(info.value)
    assert "repository.yaml:1:" in text and "pipelineImage" in text
    with pytest.raises(ConfigErrors, match="missing"):
        load_repository(tmp_path / "nowhere")
    # The old static-token setting is named, located, with what replaced it (issue 10.10).
    text = (FIXTURE / "gitops" / "repository.yaml").read_text()
    old = text.replace("checkClientSecret: sonic-check-client", "checkTokenSecret: {name: t, key: token}")
    (tmp_path / "gitops" / "repository.yaml").write_text(old)
    with pytest.raises(ConfigErrors) as info:
        load_repository(tmp_path)
    line = old.splitlines().index("checkTokenSecret: {name: t, key: token}") + 1
    assert f"repository.yaml:{line}:1: checkTokenSecret: replaced by checkClientSecret" in str(info.value)


def test_tree_uses_the_repository_file() -> None:
    t = tree()
    repo = DEFAULT.__class__(
        url="https://git.example.org/fork.git", branch="main", pipeline_image="example.org/sonic:1"
    )
    files = render_tree(t, read_inputs(t, repo), only={"cms/particlenet"})
    assert "https://git.example.org/fork.git" in files["gitops/argocd/geddes/appproject.yaml"]
    assert "example.org/sonic:1" in files["gitops/rendered/geddes/cms/particlenet/job.yaml"]
    assert all(
        p.name == "particlenet"
        for p, _ in placements()
        if f"gitops/rendered/{p.site}/{p.experiment}/{p.name}/job.yaml" in files
    )


# --- image digests (finding 14) ---------------------------------------------------------------------

DIGEST = "@sha256:" + "0123456789abcdef" * 4


def test_a_site_that_requires_digests_refuses_a_pipeline_image_by_tag() -> None:
    p, site = placement("uchicago", "minimal")
    strict = site.model_copy(update={"require_image_digests": True})
    with pytest.raises(RenderError) as info:
        render_site_deployment(p, strict, inputs_for(p))
    (problem,) = info.value.problems
    assert problem.file == "gitops/repository.yaml" and problem.site == "uchicago"
    assert f"pipelineImage {DEFAULT.pipeline_image!r} is pinned by tag only" in problem.message
    assert f"'{DEFAULT.pipeline_image}@sha256:<digest>'" in problem.message
    pinned = DEFAULT.__class__(
        url=DEFAULT.url, branch=DEFAULT.branch, pipeline_image=DEFAULT.pipeline_image + DIGEST
    )
    job = find(render_site_deployment(p, strict, inputs_for(p), repo=pinned), "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == DEFAULT.pipeline_image + DIGEST


def test_images_pinned_by_digest_are_rendered_as_written() -> None:
    p, site = placement("uchicago", "minimal")
    triton, envoy = p.triton.image + DIGEST, "envoyproxy/envoy" + DIGEST
    pinned = p.model_copy(
        update={
            "triton": p.triton.model_copy(update={"image": triton}),
            "envoy": p.envoy.model_copy(update={"image": envoy}),
        }
    )
    objs = render_site_deployment(pinned, site, inputs_for(pinned))
    images = {
        find(objs, "Deployment", n)["spec"]["template"]["spec"]["containers"][0]["image"]
        for n in (names.triton_name(p), names.envoy_name(p))
    }
    assert images == {triton, envoy}


@pytest.mark.parametrize(
    "image,valid",
    [
        ("ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0", True),
        ("ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0" + DIGEST, True),
        ("ghcr.io/fastmachinelearning/sonic-gitops-pipeline" + DIGEST, True),
        (
            "ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0"
            + DIGEST.upper().replace("@SHA256", "@sha256"),
            False,
        ),
        ("ghcr.io/fastmachinelearning/sonic-gitops-pipeline:0.1.0" + DIGEST[:-1], False),
    ],
)
def test_the_pipeline_image_takes_the_schemas_image_form(tmp_path: Path, image: str, valid: bool) -> None:
    (tmp_path / "gitops").mkdir()
    text = (FIXTURE / "gitops" / "repository.yaml").read_text()
    (tmp_path / "gitops" / "repository.yaml").write_text(
        text.replace(f"pipelineImage: {DEFAULT.pipeline_image}", f"pipelineImage: {image}")
    )
    if valid:
        assert load_repository(tmp_path).pipeline_image == image
        return
    with pytest.raises(ConfigErrors) as info:
        load_repository(tmp_path)
    line = text.splitlines().index(f"pipelineImage: {DEFAULT.pipeline_image}") + 1
    assert (
        f"repository.yaml:{line}:16: pipelineImage: {image!r} is not valid: expected a container image"
        in str(info.value)
    )
    assert "64 lower-case hexadecimal digits" in str(info.value)
