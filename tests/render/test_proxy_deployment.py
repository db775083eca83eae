"""The Envoy Deployment around the bootstrap: Services, ConfigMap, probes, token, Ingress, PDB.

(Named so as not to clash with test_envoy*.py, which test the bootstrap itself.)
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from pipelines.render import names
from pipelines.render.envoy import PROMETHEUS_TOKEN_PATH
from tests.render.support import all_objects, find, placement, placements, rendered

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
    ing = find(rendered(p), "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ing["spec"]["tls"] == [
        {"hosts": ["sonic-cms.anvil.rcac.purdue.edu"], "secretName": "anvil-wildcard-tls"}
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
