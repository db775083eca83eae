"""The Envoy Deployment around the bootstrap: Services, ConfigMap, probes, token, Ingress, PDB.

(Named so as not to clash with test_envoy*.py, which test the bootstrap itself.)
"""

from __future__ import annotations

import hashlib
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import load_tree, names
from pipelines.render import render_site_deployment
from pipelines.render.envoy.gate import PROMETHEUS_TOKEN_PATH
from pipelines.render.envoy.k8s import MAX_WORKERS, envoy_workers
from tests.config.support import SONIC
from tests.render.support import all_objects, find, inputs_for, placement, placements, rendered
from tests.render.support import ident as ident_of

INSTALLERS = ("apt-get", "apt ", "yum", "dnf", "apk", "pip", "conda", "curl -", "wget", "install")


def _envoy(objs: list[dict[str, Any]], p_name: str) -> dict[str, Any]:
    return find(objs, "Deployment", f"{p_name}-envoy")


def test_client_service_never_carries_the_admin_port() -> None:
    """SuperSONIC defect 3: the admin port was in the client Service (exposed by a LoadBalancer)."""
    for ident, obj in all_objects():
        if obj["kind"] == "Service":
            ports = {port["port"] for port in obj["spec"]["ports"]}
            assert names.ENVOY_ADMIN not in ports, ident
            if obj["metadata"]["name"].endswith("-envoy"):
                assert [port["name"] for port in obj["spec"]["ports"]] == ["grpc"], ident
        if obj["kind"] == "Deployment":
            for c in obj["spec"]["template"]["spec"]["containers"]:
                assert names.ENVOY_ADMIN not in {port["containerPort"] for port in c.get("ports", [])}, ident


def test_stats_have_their_own_service() -> None:
    p, _ = placement("geddes", "particlenet")
    stats = find(rendered(p), "Service", names.envoy_stats_name(p))
    assert [port["port"] for port in stats["spec"]["ports"]] == [names.ENVOY_STATS]
    assert stats["metadata"]["labels"][names.ROLE_LABEL] == "stats"


def test_no_container_installs_anything_and_envoy_args_are_used() -> None:
    """SuperSONIC defect 2: apt-get at every start, and Envoy's args ignored."""
    for ident, obj in all_objects():
        spec = obj["spec"]["template"]["spec"] if obj["kind"] in ("Deployment", "Job") else None
        if spec is None:
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            words = " ".join(c.get("command", []) + c.get("args", []))
            assert not any(w in words for w in INSTALLERS), f"{ident}: {c['name']}: {words}"
            if c["name"] == "envoy":
                assert "command" not in c  # the image's entrypoint is Envoy itself
                assert c["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]


def test_config_map_holds_the_bootstrap_and_the_checksum_rolls_pods() -> None:
    p, _ = placement("geddes", "particlenet")
    objs = rendered(p)
    cm = find(objs, "ConfigMap", f"{p.name}-envoy")
    text = cm["data"]["envoy.yaml"]
    config = yaml.safe_load(text)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    pod = _envoy(objs, p.name)["spec"]["template"]
    assert (
        pod["metadata"]["annotations"][names.CONFIG_CHECKSUM_ANNOTATION]
        == hashlib.sha256(text.encode()).hexdigest()
    )


def test_probes_hit_the_stats_listener_and_root_is_read_only() -> None:
    for p, _ in placements():
        c = _envoy(rendered(p), p.name)["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/ready", "port": "stats"}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {port["name"] for port in c["ports"]} == {"grpc", "stats"}


def test_prometheus_token_is_mounted_from_the_site_secret() -> None:
    p, _ = placement("geddes", "particlenet")  # geddes: prometheus.auth.secretRef prometheus-token/token
    spec = _envoy(rendered(p), p.name)["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "prometheus-token")
    assert volume["secret"]["secretName"] == "prometheus-token"
    assert volume["secret"]["items"] == [{"key": "token", "path": PROMETHEUS_TOKEN_PATH.rsplit("/", 1)[1]}]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "prometheus-token")
    assert mount["mountPath"] == PROMETHEUS_TOKEN_PATH.rsplit("/", 1)[0] and mount["readOnly"] is True
    q, _ = placement("nautilus", "particlenet")  # nautilus: no auth
    assert all(
        v["name"] != "prometheus-token"
        for v in _envoy(rendered(q), q.name)["spec"]["template"]["spec"]["volumes"]
    )


def test_ingress_uses_the_site_class_annotations_and_tls() -> None:
    p, _ = placement("anvil", "particlenet-anvil")
    ing = find(rendered(p), "Ingress", names.envoy_name(p))
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ing["spec"]["tls"] == [
        {"hosts": ["cms-sonic.anvilcloud.rcac.purdue.edu"], "secretName": "anvil-wildcard-tls"}
    ]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "particlenet-anvil-envoy", "port": {"name": "grpc"}}
    q, _ = placement("uchicago", "minimal")
    assert not [o for o in rendered(q) if o["kind"] == "Ingress"]


@pytest.mark.parametrize("site,name,pdb", [("geddes", "particlenet", True), ("uchicago", "minimal", False)])
def test_envoy_pdb_only_with_more_than_one_replica(site: str, name: str, pdb: bool) -> None:
    p, _ = placement(site, name)
    found = [
        o
        for o in rendered(p)
        if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == f"{name}-envoy"
    ]
    assert bool(found) == pdb
    if found:
        assert found[0]["spec"]["minAvailable"] == 1


def _concurrency(obj: dict[str, Any]) -> int:
    args = obj["spec"]["template"]["spec"]["containers"][0]["args"]
    return int(args[args.index("--concurrency") + 1])


def test_every_envoy_runs_as_many_workers_as_its_cpu_limit() -> None:
    """Envoy's default is a worker per hardware thread of the node, whatever the CPU limit."""
    for p, _ in placements():
        envoy = _envoy(rendered(p), p.name)
        limit = envoy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
        cores = int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
        expected = max(1, math.ceil(cores))
        assert _concurrency(envoy) == expected, ident_of(p)


def _edit_minimal(root: Path, edit: Any) -> None:
    """Apply ``edit`` to the parsed cms/minimal.yaml of the tree at ``root`` and write it back."""
    path = root / "experiments" / "cms" / "minimal.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("envoy", "site_envoy", "workers"),
    [
        ({"resources": {"cpu": "250m", "memory": "256Mi"}}, None, 1),
        ({"resources": {"cpu": "1", "memory": "256Mi"}}, None, 1),
        ({"resources": {"cpu": "500m", "cpuLimit": "1500m", "memory": "256Mi"}}, None, 2),
        ({"resources": {"cpu": "3", "memory": "256Mi"}}, None, 3),
        ({"resources": {"cpu": "3", "memory": "256Mi"}, "workers": 1}, None, 1),
        ({"workers": 2}, {"workers": 6}, 6),  # a site override wins
        ({}, {"resources": {"cpu": "4", "memory": "256Mi"}}, 4),  # ... and so does a site's CPU limit
    ],
)
def test_workers_follow_the_cpu_limit_unless_set(
    example_tree: Path, envoy: dict[str, Any], site_envoy: dict[str, Any] | None, workers: int
) -> None:

    def edit(data: dict[str, Any]) -> None:
        data.setdefault("envoy", {}).update(envoy)
        if site_envoy is not None:
            (site,) = data["sites"]
            data["sites"][site] = {**(data["sites"][site] or {}), "envoy": site_envoy}

    _edit_minimal(example_tree, edit)
    tree = load_tree(example_tree)
    p = tree.deployment("cms/minimal").placements[0]
    assert envoy_workers(p) == workers
    assert (
        _concurrency(_envoy(render_site_deployment(p, tree.sites[p.site], inputs_for(p)), p.name)) == workers
    )


def test_workers_derived_from_a_huge_cpu_limit_are_clamped(example_tree: Path) -> None:
    """A CPU limit of 100 cores (a site quota that large) never gives Envoy --concurrency 100."""
    p = load_tree(example_tree).deployment("cms/minimal").placements[0]
    big = p.envoy.resources.model_copy(update={"cpu_limit": "100"})
    p = p.model_copy(update={"envoy": p.envoy.model_copy(update={"resources": big, "workers": None})})
    assert envoy_workers(p) == MAX_WORKERS == 64


def test_workers_out_of_range_is_a_located_error(example_tree: Path) -> None:
    _edit_minimal(example_tree, lambda data: data.setdefault("envoy", {}).update(workers=0))
    result = subprocess.run(
        [*SONIC, "validate"], cwd=example_tree, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "minimal.yaml" in result.stdout + result.stderr and "workers" in result.stdout + result.stderr
