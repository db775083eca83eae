"""Triton Deployment + headless Service: arguments, scheduling, model sources, probes, draining."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import names
from pipelines.config.model import S3, Cvmfs, Storage
from pipelines.modelrepo.lock import Lock, LockedModel, content_digest
from pipelines.render.errors import RenderError, Unvalidated
from pipelines.render.triton import render_triton
from pipelines.render.volumes import CVMFS_MODES, IN_PLACE, check_lock
from tests.render.support import ROOT, find, lock_for, placement, placements, rendered

SH = shutil.which("sh")


def _triton(objs: list[dict[str, Any]]) -> dict[str, Any]:
    d = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-triton"))
    c: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
    return c


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    d = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-triton"))
    spec: dict[str, Any] = d["spec"]["template"]["spec"]
    return spec


def test_args_are_a_list_of_single_options() -> None:
    p, _ = placement("geddes", "particlenet")
    c = _triton(rendered(p))
    assert c["command"] == ["tritonserver"]
    assert all(isinstance(a, str) and a.startswith("--") and " " not in a.split("=", 1)[0] for a in c["args"])
    assert "--exit-timeout-secs=60" in c["args"]
    assert "--backend-config=onnxruntime,enable-global-threadpool=1" in c["args"]
    assert "--strict-model-config=false" in c["args"]
    repos = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--model-repository=")]
    assert repos == list(p.model_repository.cvmfs)


def test_explicit_mode_loads_every_model_and_poll_mode_sets_interval() -> None:
    p, site = placement("geddes", "particlenet")
    server = p.triton.server.model_copy(update={"model_control_mode": "explicit"})
    q = p.model_copy(update={"triton": p.triton.model_copy(update={"server": server})})
    args = _triton(render_triton(q, site, None))["args"]
    assert [a for a in args if a.startswith("--load-model=")] == [f"--load-model={m.name}" for m in p.models]
    server = p.triton.server.model_copy(update={"model_control_mode": "poll", "poll_interval": 30.0})
    q = p.model_copy(update={"triton": p.triton.model_copy(update={"server": server})})
    assert "--repository-poll-secs=30" in _triton(render_triton(q, site, None))["args"]


def test_gpu_class_sets_resources_selector_affinity_and_tolerations() -> None:
    p, _site = placement("geddes", "particlenet")
    objs = rendered(p)
    c, pod = _triton(objs), _pod(objs)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"cms-af-prod": "true"}
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-80GB-PCIe"]}
    ]
    assert pod["tolerations"] == [
        {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "cms-af", "effect": "NoSchedule"}
    ]


def test_site_override_adds_node_selector_to_the_class() -> None:
    p, _ = placement("nautilus", "particlenet")
    pod = _pod(rendered(p))
    assert pod["nodeSelector"] == {"topology.kubernetes.io/zone": "ucsd"}
    values = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert values["matchExpressions"][0]["values"] == ["NVIDIA-A10"]


def test_cpu_only_deployment_has_no_gpu_and_hides_gpus() -> None:
    p, _ = placement("uchicago", "minimal")
    objs = rendered(p)
    c, pod = _triton(objs), _pod(objs)
    assert not any("gpu" in k for k in c["resources"]["limits"])
    assert "affinity" not in pod and "tolerations" not in pod
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in c["env"]


def test_replicas_fixed_or_left_to_keda() -> None:
    fixed, _ = placement("nautilus", "particlenet")
    scaled, _ = placement("geddes", "particlenet")
    assert find(rendered(fixed), "Deployment", "particlenet-triton")["spec"]["replicas"] == 5
    assert "replicas" not in find(rendered(scaled), "Deployment", "particlenet-triton")["spec"]


def test_probes_follow_the_configuration() -> None:
    p, _ = placement("nautilus", "cnn-classifier")
    c = _triton(rendered(p))
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    # 300 s start-up budget: the kubelet gives up only after period x failureThreshold >= 300 s.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "/v2/models/icecube_cnn/versions/3/ready" in c["readinessProbe"]["exec"]["command"][2]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_drain_settings() -> None:
    p, _ = placement("geddes", "particlenet")
    objs = rendered(p)
    assert _pod(objs)["terminationGracePeriodSeconds"] == 90
    assert _triton(objs)["lifecycle"]["preStop"]["exec"]["command"][-1].endswith("sleep 30")


# --- SuperSONIC defect 1: the preStop drain must really create the drain file ----------------------


def _shim(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(SH is None, reason="needs sh")
@pytest.mark.parametrize("site,name", [("geddes", "particlenet"), ("uchicago", "minimal")])
def test_prestop_creates_the_drain_file_and_readiness_then_fails(
    tmp_path: Path, site: str, name: str
) -> None:
    p, _ = placement(site, name)
    c = _triton(rendered(p))
    prestop = c["lifecycle"]["preStop"]["exec"]["command"]
    ready = c["readinessProbe"]["exec"]["command"]
    assert prestop[:2] == ["/bin/sh", "-c"] and ready[:2] == ["/bin/sh", "-c"]

    # Run the exact scripts, with /tmp mapped into a temp dir; sleep and curl are stand-ins
    # that record their arguments (curl "succeeds": Triton itself is ready).
    root = tmp_path / "pod"
    (root / "tmp").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _shim(bin_dir, "sleep", f'echo "$@" > {shlex.quote(str(tmp_path / "slept"))}')
    _shim(bin_dir, "curl", f'echo "$@" > {shlex.quote(str(tmp_path / "curled"))}; exit 0')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(script: str) -> int:
        assert script.count(names.DRAIN_FILE) == 1
        local = script.replace(names.DRAIN_FILE, str(root / names.DRAIN_FILE.lstrip("/")))
        return subprocess.run([SH, "-c", local], env=env, timeout=30, check=False).returncode  # type: ignore[list-item]

    assert run(ready[2]) == 0, "ready before draining"
    assert "127.0.0.1:8000" in (tmp_path / "curled").read_text()
    assert run(prestop[2]) == 0
    assert (root / "tmp" / "drain").exists(), "preStop did not create the drain file"
    assert (tmp_path / "slept").read_text().split() == [str(int(p.triton.drain.delay))]
    assert run(ready[2]) != 0, "readiness must fail while draining"


# --- model sources, including SuperSONIC defect 9 (volume type names) ------------------------------


def _schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "schemas" / name).read_text())
    return data


def test_storage_type_names_are_the_schema_names() -> None:
    deployment = _schema("deployment.schema.json")
    site = _schema("site.schema.json")
    assert list(IN_PLACE) == list(deployment["$defs"]["modelRepository"]["properties"])
    assert set(CVMFS_MODES) == set(site["properties"]["storage"]["properties"]["cvmfs"]["properties"])


def _mount_for(c: dict[str, Any], path: str) -> dict[str, Any] | None:
    best = None
    for m in c["volumeMounts"]:
        mp = m["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
            best = m
    return best


@pytest.mark.parametrize("ident", [f"{p.site}/{p.name}" for p, _ in placements()])
def test_every_repository_is_on_a_real_read_only_volume(ident: str) -> None:
    """Every --model-repository lies on a mounted, read-only, non-empty volume (or in the image)."""
    site_name, name = ident.split("/")
    p, site = placement(site_name, name)
    objs = rendered(p)
    c, pod = _triton(objs), _pod(objs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    repos = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--model-repository=")]
    assert repos
    for repo in repos:
        if repo in p.model_repository.baked:
            continue
        mount = _mount_for(c, repo)
        assert mount is not None, f"{repo} is on no volume"
        assert mount["readOnly"] is True
        volume = volumes[mount["name"]]
        kinds = set(volume) - {"name"}
        assert kinds <= {"persistentVolumeClaim", "hostPath", "nfs"}, kinds
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            rendered_claims = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
            assert (
                claim in rendered_claims
                or claim in site.storage.pvcs
                or (site.storage.snapshots is not None and claim == site.storage.snapshots.claim)
            )


def test_cvmfs_storage_class_renders_a_read_only_many_claim() -> None:
    p, _ = placement("nautilus", "cnn-classifier")
    claim = find(rendered(p), "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claim["spec"]["storageClassName"] == "csi-cvmfs"


def test_cvmfs_host_path_and_nfs_and_pvc(tmp_path: Path) -> None:
    p, site = placement("uchicago", "exatrkx")
    repo = p.model_repository.model_copy(
        update={"cvmfs": ("/cvmfs/atlas.cern.ch/models",), "nfs": ("exatrkx",)}
    )
    q = p.model_copy(update={"model_repository": repo})
    objs = render_triton(q, site, None)
    c, pod = _triton(objs), _pod(objs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cvmfs"]["hostPath"] == {"path": "/cvmfs", "type": "Directory"}
    # Only the experiment's own directory of the export is mounted (issue 11, finding 12).
    assert volumes["models-nfs"]["nfs"] == {
        "server": "nfs.af.uchicago.edu",
        "path": "/export/sonic/atlas",
        "readOnly": True,
    }
    nfs_mount = next(m for m in c["volumeMounts"] if m["name"] == "models-nfs")
    assert "subPath" not in nfs_mount
    assert volumes["models-pvc-0"]["persistentVolumeClaim"] == {"claimName": "atlas-models", "readOnly": True}
    pvc_mount = next(m for m in c["volumeMounts"] if m["name"] == "models-pvc-0")
    assert pvc_mount["subPath"] == "exatrkx/v2"
    repos = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--model-repository=")]
    assert repos == ["/cvmfs/atlas.cern.ch/models", "/models/pvc/0", "/models/nfs/exatrkx"]


@pytest.mark.parametrize(
    ("field", "update", "message"),
    [
        (
            "nfs",
            {"nfs": ("../cms/models",)},
            "modelRepository.nfs[0]: '../cms/models' has a '.' or '..' segment",
        ),
        ("cvmfs", {"cvmfs": ("/cvmfs/atlas.cern.ch/../../etc",)}, "modelRepository.cvmfs[0]:"),
        ("baked", {"baked": ("/models/..",)}, "modelRepository.baked[0]:"),
    ],
)
def test_renderer_refuses_dot_dot_even_without_the_schema(
    field: str, update: dict[str, object], message: str
) -> None:
    p, site = placement("uchicago", "exatrkx")
    q = p.model_copy(update={"model_repository": p.model_repository.model_copy(update=update)})
    with pytest.raises(Unvalidated, match=re.escape(message)):
        render_triton(q, site, None)


def test_renderer_refuses_a_dot_dot_pvc_sub_path() -> None:
    p, site = placement("uchicago", "exatrkx")
    entry = p.model_repository.pvc[0].model_copy(update={"path": "exatrkx/../../other"})
    q = p.model_copy(update={"model_repository": p.model_repository.model_copy(update={"pvc": (entry,)})})
    with pytest.raises(Unvalidated, match=re.escape("modelRepository.pvc[0].path: 'exatrkx/../../other'")):
        render_triton(q, site, None)


def test_source_the_site_does_not_offer_is_refused_as_unvalidated() -> None:
    """semantic.storage_available says it to the user (corpus: rule-storage-*-not-offered)."""
    p, site = placement("uchicago", "exatrkx")
    bare = site.model_copy(update={"storage": Storage(pvcs=())})
    with pytest.raises(
        Unvalidated, match=r"claim 'atlas-models' is not offered.*semantic\.storage_available"
    ):
        render_triton(p, bare, None)


# --- the built snapshot ----------------------------------------------------------------------------


def test_snapshot_is_mounted_read_only_from_the_site_claim() -> None:
    p, site = placement("uchicago", "minimal")
    lock = lock_for(p)
    assert lock is not None
    c = _triton(render_triton(p, site, lock))
    mount = next(m for m in c["volumeMounts"] if m["name"] == "models-built")
    assert mount == {
        "name": "models-built",
        "mountPath": "/models/built",
        "subPath": "cms/minimal",
        "readOnly": True,
    }
    assert f"--model-repository=/models/built/snapshots/{lock.snapshot}" in c["args"]


def test_artifacts_without_a_lock_are_a_clear_error() -> None:
    p, site = placement("uchicago", "minimal")
    with pytest.raises(RenderError) as info:
        check_lock(p, None, {})
    text = str(info.value)
    assert "experiments/cms/minimal.yaml" in text and "sonic build-models" in text and "btag_mini" in text
    with pytest.raises(Unvalidated, match=r"volumes\.check_lock"):
        render_triton(p, site, None)


def test_stale_or_edited_lock_is_an_error() -> None:
    p, _ = placement("uchicago", "minimal")
    lock = lock_for(p)
    assert lock is not None
    other = LockedModel("btag_mini", (1,), "x", "f" * 64, 1, "0" * 64)
    stale = Lock("cms", "minimal", content_digest("cms", "minimal", (other,)), (other,))
    with pytest.raises(RenderError, match="does not match the declared models"):
        check_lock(p, stale, {})
    edited = Lock(lock.experiment, lock.deployment, "0" * 64, lock.models)
    with pytest.raises(RenderError, match="edited by hand"):
        check_lock(p, edited, {})
    check_lock(p, lock, {})  # the current one passes


def test_snapshot_from_s3_uses_secret_references_only() -> None:
    p, site = placement("uchicago", "minimal")
    s3 = S3(endpoint="https://s3.example.org", bucket="sonic-models", credentials="sonic-s3")
    storage = Storage(cvmfs=Cvmfs(host_path="/cvmfs"), pvcs=(), s3=s3)
    c = _triton(render_triton(p, site.model_copy(update={"storage": storage}), lock_for(p)))
    assert any(
        a.startswith("--model-repository=s3://https://s3.example.org/sonic-models/cms/minimal/snapshots/")
        for a in c["args"]
    )
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "sonic-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    nowhere = site.model_copy(update={"storage": Storage(pvcs=(), snapshots=None)})
    with pytest.raises(Unvalidated, match="no snapshot storage"):
        render_triton(p, nowhere, lock_for(p))


@pytest.mark.parametrize("host_path", ["/", "/etc", "/var/lib/kubelet"])
def test_renderer_refuses_a_host_path_that_is_not_a_cvmfs_mount(host_path: str) -> None:
    """Issue 11, finding 2: a hostPath shows the node's files to every Triton pod; only CVMFS may be mounted."""
    p, site = placement("uchicago", "exatrkx")
    q = p.model_copy(
        update={
            "model_repository": p.model_repository.model_copy(update={"cvmfs": ("/cvmfs/atlas.cern.ch/m",)})
        }
    )
    render_triton(q, site, None)  # the site's /cvmfs renders
    bad = site.model_copy(
        update={"storage": site.storage.model_copy(update={"cvmfs": Cvmfs(host_path=host_path)})}
    )
    with pytest.raises(Unvalidated, match=re.escape(f"hostPath {host_path!r}")):
        render_triton(q, bad, None)
