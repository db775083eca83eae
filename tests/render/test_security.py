"""Security by default, on every pod and in the whole rendered tree."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.config import names
from pipelines.render.security import NAMESPACE_NAME_LABEL, render_security
from tests.render.support import all_objects, find, placement, placements, pods, rendered
from tests.render.support import ident as deployment_id

# Shapes of credentials that must never be inlined (JWTs, PEM keys, cloud keys, bearer headers).
SECRET_SHAPES = [
    re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"(?i)authorization:\s*bearer\s+[A-Za-z0-9._-]{8,}"),
    re.compile(r"(?i)(password|passwd|secret_key)\s*[:=]\s*\S+"),
]


@pytest.mark.parametrize(
    "ident,obj",
    [(i, o) for i, o in all_objects() if pods(o) is not None],
    ids=lambda x: x if isinstance(x, str) else x["metadata"]["name"],
)
def test_every_pod_is_locked_down(ident: str, obj: dict) -> None:  # type: ignore[type-arg]
    spec = pods(obj)
    assert spec is not None
    # Only the in-namespace Prometheus reads the API (endpoint discovery, a namespaced Role).
    discovers = obj["metadata"]["labels"]["app.kubernetes.io/name"] == "prometheus"
    assert spec["automountServiceAccountToken"] is discovers
    assert spec["serviceAccountName"]
    sc = spec["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
    for c in spec.get("initContainers", []) + spec["containers"]:
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}
        assert csc.get("privileged") is False
        assert "runAsUser" not in csc or csc["runAsUser"] > 0
        for key in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][key]), f"{c['name']}: {key}"
        if c["name"] in ("envoy", "check"):
            assert csc["readOnlyRootFilesystem"] is True
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), "a writable /tmp"


def test_service_accounts_do_not_mount_tokens() -> None:
    accounts = [o for _, o in all_objects() if o["kind"] == "ServiceAccount"]
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


def test_no_secret_value_anywhere() -> None:
    for ident, obj in all_objects():
        assert obj["kind"] != "Secret", ident
        text = json.dumps(obj)
        for shape in SECRET_SHAPES:
            assert not shape.search(text), (
                f"{ident}: {obj['kind']} {obj['metadata']['name']}: {shape.pattern}"
            )
        for c in (pods(obj) or {}).get("containers", []):
            for env in c.get("env", []):
                # Values are fine for non-secrets; secrets come by reference only.
                assert (
                    "value" in env
                    or "secretKeyRef" in env.get("valueFrom", {})
                    or "fieldRef" in env.get("valueFrom", {})
                )
                assert not (("KEY" in env["name"] or "TOKEN" in env["name"]) and "value" in env), env


# kubernetes pkg/apis/core/v1/defaults.go, SetDefaults_Namespace: the API server labels every
# namespace kubernetes.io/metadata.name=<its name> (GA in 1.22), so a policy can name a namespace
# without any admin labelling it.
def _prometheus_peer(namespace: str) -> dict[str, object]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def test_triton_reachable_only_from_envoy_and_prometheus() -> None:
    p, site = placement("nautilus", "particlenet")
    assert site.prometheus is not None and NAMESPACE_NAME_LABEL == "kubernetes.io/metadata.name"
    policy = find(rendered(p), "NetworkPolicy", names.triton_name(p))
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": names.selector(p, "triton")}
    assert spec["policyTypes"] == ["Ingress"]
    envoy_rule, prom_rule = spec["ingress"]
    assert envoy_rule["from"] == [{"podSelector": {"matchLabels": names.selector(p, "envoy")}}]
    assert envoy_rule["ports"] == [{"protocol": "TCP", "port": names.TRITON_GRPC}]
    assert prom_rule["ports"] == [{"protocol": "TCP", "port": names.TRITON_METRICS}]
    assert prom_rule["from"] == [_prometheus_peer(site.prometheus.namespace)]


def test_envoy_reachable_only_on_its_listeners() -> None:
    p, site = placement(
        "geddes", "particlenet"
    )  # external Prometheus URL: the namespace comes from the site file
    assert site.prometheus is not None and site.prometheus.namespace == "monitoring"
    spec = find(rendered(p), "NetworkPolicy", names.envoy_name(p))["spec"]
    ports = [rule["ports"] for rule in spec["ingress"]]
    assert ports == [
        [{"protocol": "TCP", "port": names.ENVOY_GRPC}],
        [{"protocol": "TCP", "port": names.ENVOY_STATS}],
    ]
    assert "from" not in spec["ingress"][0]  # clients from anywhere
    assert spec["ingress"][1]["from"] == [_prometheus_peer("monitoring")]


def test_every_metrics_port_admits_exactly_the_declared_prometheus_namespace() -> None:
    """No peer anywhere depends on a label an admin must add; every metrics rule names one namespace."""
    for p, site in placements():
        allowed = []
        if site.prometheus is not None:
            allowed.append([_prometheus_peer(site.prometheus.namespace)])
        if p.monitoring.prometheus.enabled:  # the deployment's own, in its namespace
            allowed.append([{"podSelector": {"matchLabels": names.selector(p, "prometheus")}}])
        assert allowed, deployment_id(p)
        for policy in (o for o in rendered(p) if o["kind"] == "NetworkPolicy"):
            seen = []
            for rule in policy["spec"].get("ingress", []):
                port = rule["ports"][0]["port"]
                if port in (names.TRITON_METRICS, names.ENVOY_STATS):
                    assert rule["from"] in allowed, deployment_id(p)
                    seen.append(rule["from"])
            if policy["metadata"]["name"] in (names.triton_name(p), names.envoy_name(p)):
                assert seen == allowed, deployment_id(p)


def test_no_prometheus_no_metrics_rule() -> None:
    """A rule with an empty ``from`` admits every source (NetworkPolicyIngressRule.from, networking/v1),
    so a site without Prometheus gets no metrics rule at all rather than ``from: []``."""
    p, site = placement("uchicago", "minimal")
    bare = site.model_copy(update={"prometheus": None})
    for policy in (o for o in render_security(p, bare, None) if o["kind"] == "NetworkPolicy"):
        ports = [rule["ports"][0]["port"] for rule in policy["spec"].get("ingress", [])]
        assert names.TRITON_METRICS not in ports and names.ENVOY_STATS not in ports
        assert all(rule.get("from") != [] for rule in policy["spec"].get("ingress", []))


def test_triton_pdb() -> None:
    p, _ = placement("nautilus", "particlenet")
    pdb = find(rendered(p), "PodDisruptionBudget", names.triton_name(p))
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": names.selector(p, "triton")}}
