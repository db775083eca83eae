"""The in-namespace monitoring stack against a real API server: Pod Security ``restricted``
admission of every pod, and RBAC that lets its Prometheus read its own namespace only.

The rendered objects of the example that runs the stack (cms/particlenet-anvil at Anvil) are
applied into a fresh namespace enforcing the project's Pod Security level; each Deployment's pod
template is then created as a Pod (dry run), which is where the Pod Security admission plugin
enforces (a Deployment itself only draws warnings). Access is asked of the real RBAC authorizer
with SubjectAccessReviews, as the ServiceAccount tokens would carry it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelines.config import names
from pipelines.config.names import POD_SECURITY_LEVEL
from pipelines.render import render_site_deployment
from tests.controlplane.test_rbac import allowed
from tests.render.support import inputs_for, placement
from tests.support.controlplane import ControlPlane, apply_object, ensure_namespace

NAMESPACE = "cms-monitoring-stack"


def _objects() -> list[dict[str, Any]]:
    """The stack's objects (and their neighbours) moved into NAMESPACE."""
    p, site = placement("anvil", "particlenet-anvil")
    assert p.monitoring.prometheus.enabled and p.monitoring.grafana.enabled and p.monitoring.tracing.enabled
    objs = copy.deepcopy(render_site_deployment(p, site, inputs_for(p)))
    for obj in objs:
        obj["metadata"]["namespace"] = NAMESPACE
        for subject in obj.get("subjects", []):
            subject["namespace"] = NAMESPACE
    return objs


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane) -> ControlPlane:
    cp = control_plane
    ensure_namespace(
        cp,
        NAMESPACE,
        {f"pod-security.kubernetes.io/{mode}": POD_SECURITY_LEVEL for mode in ("enforce", "audit", "warn")},
    )
    for obj in _objects():
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "NetworkPolicy"):
            status, body = apply_object(cp, obj)
            assert status in (200, 201), f"{obj['kind']} {obj['metadata']['name']}: {body}"
    return cp


def test_every_stack_pod_is_admitted_under_restricted(stack: ControlPlane) -> None:
    p, _ = placement("anvil", "particlenet-anvil")
    stack_names = {
        names.prometheus_name(p),
        names.grafana_name(p),
        names.otel_collector_name(p),
        names.tempo_name(p),
    }
    deployments = [
        o for o in _objects() if o["kind"] == "Deployment" and o["metadata"]["name"] in stack_names
    ]
    assert {d["metadata"]["name"] for d in deployments} == stack_names
    for dep in deployments:
        status, body = apply_object(stack, dep, dry_run=True)
        assert status in (200, 201), f"Deployment {dep['metadata']['name']}: {body}"
        template = dep["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": dep["metadata"]["name"] + "-probe",
                "namespace": NAMESPACE,
                **template["metadata"],
            },
            "spec": template["spec"],
        }
        status, body = stack.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All", pod)
        assert status == 201, f"pod of {dep['metadata']['name']} refused: {body}"


def test_prometheus_reads_its_own_namespace_only(stack: ControlPlane) -> None:
    p, _ = placement("anvil", "particlenet-anvil")
    prometheus = (NAMESPACE, names.prometheus_name(p))
    for resource in ("pods", "endpoints", "services"):
        for verb in ("get", "list", "watch"):
            assert allowed(stack, prometheus, verb, resource, namespace=NAMESPACE), (verb, resource)
        assert not allowed(stack, prometheus, "list", resource, namespace="default"), resource
        assert not allowed(stack, prometheus, "list", resource, namespace="kube-system"), resource
        assert not allowed(stack, prometheus, "list", resource), f"cluster-wide {resource}"
        for verb in ("create", "update", "patch", "delete"):
            assert not allowed(stack, prometheus, verb, resource, namespace=NAMESPACE), (verb, resource)
    assert not allowed(stack, prometheus, "get", "secrets", namespace=NAMESPACE)
    assert not allowed(stack, prometheus, "list", "configmaps", namespace=NAMESPACE)
    assert not allowed(stack, prometheus, "get", "pods", namespace=NAMESPACE, subresource="exec")


def test_other_stack_accounts_have_no_access(stack: ControlPlane) -> None:
    p, _ = placement("anvil", "particlenet-anvil")
    for name in (names.grafana_name(p), names.otel_collector_name(p), names.tempo_name(p)):
        for resource in ("pods", "endpoints", "services", "secrets"):
            assert not allowed(stack, (NAMESPACE, name), "list", resource, namespace=NAMESPACE), (
                name,
                resource,
            )
