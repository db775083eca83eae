"""Safety objects of a deployment, and the pod/container security settings every pod uses.

- ServiceAccounts without token automount (no pod here talks to the Kubernetes API).
- NetworkPolicies: Triton accepts only Envoy (gRPC) and Prometheus (metrics); Envoy accepts
  clients on its gRPC listener and Prometheus on its stats listener, nothing else (the admin
  interface is bound to 127.0.0.1 inside the pod anyway); the PostSync check pods accept nothing.
- A PodDisruptionBudget for Triton: node drains take one replica at a time.

Prometheus is the namespace the site file names (``prometheus.namespace``), selected by the
``kubernetes.io/metadata.name`` label the API server sets on every namespace (Kubernetes 1.22+),
so no admin has to label anything. A site without Prometheus gets no metrics rule at all: a
NetworkPolicy rule with an empty ``from`` would admit every source.

Envoy's client port stays open to every source: clients are batch jobs in any namespace, the
scheduled checks run in the Argo Workflows namespace, and an ingress controller on the host
network (``ingress.namespace`` of the site) is matched by no namespace selector.
"""

from __future__ import annotations

from typing import Any

from pipelines.config import names
from pipelines.config.model import Placement, Site
from pipelines.modelrepo.lock import Lock
from pipelines.render.objects import meta

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server, immutable


def pod_security(run_as_user: int, *, secrets: bool = False) -> dict[str, Any]:
    """Pod-level securityContext: non-root with a fixed UID/GID, the runtime's default seccomp profile.

    ``secrets``: the pod mounts Secrets readable by its group only, so the group owns them
    (``fsGroup``). Model pods get no ``fsGroup``: it could make the kubelet re-own large volumes.
    """
    out: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if secrets:
        out["fsGroup"] = run_as_user
        out["fsGroupChangePolicy"] = "OnRootMismatch"
    return out


def container_security(*, read_only_root: bool) -> dict[str, Any]:
    """Container-level securityContext: no privilege escalation, every capability dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def namespace_peer(namespace: str) -> dict[str, Any]:
    """A NetworkPolicy peer: every pod of one namespace, by the name the API server labels it with."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}


def _metrics_rules(p: Placement, site: Site, port: int) -> list[dict[str, Any]]:
    """The ingress rules admitting the site's Prometheus, and the deployment's own, to ``port``;
    none without a Prometheus."""
    rules = []
    if site.prometheus is not None:
        rules.append(
            {
                "from": [namespace_peer(site.prometheus.namespace)],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        )
    if p.monitoring.prometheus.enabled:
        rules.append(
            {
                "from": [{"podSelector": {"matchLabels": names.selector(p, "prometheus")}}],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        )
    return rules


def render_security(p: Placement, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
    """ServiceAccounts, NetworkPolicies and the Triton PodDisruptionBudget of one deployment."""
    objs: list[dict[str, Any]] = []
    for component, name in (
        ("triton", names.triton_name(p)),
        ("envoy", names.envoy_name(p)),
        ("check", names.check_name(p)),
    ):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta(p, component, name),
                "automountServiceAccountToken": False,
            }
        )
    objs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(p, "triton", names.triton_name(p)),
            "spec": {
                "podSelector": {"matchLabels": names.selector(p, "triton")},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": names.selector(p, "envoy")}}],
                        "ports": [{"protocol": "TCP", "port": names.TRITON_GRPC}],
                    },
                    *_metrics_rules(p, site, names.TRITON_METRICS),
                ],
            },
        }
    )
    objs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(p, "envoy", names.envoy_name(p)),
            "spec": {
                "podSelector": {"matchLabels": names.selector(p, "envoy")},
                "policyTypes": ["Ingress"],
                "ingress": [
                    # Clients from anywhere (see the module docstring).
                    {"ports": [{"protocol": "TCP", "port": names.ENVOY_GRPC}]},
                    *_metrics_rules(p, site, names.ENVOY_STATS),
                ],
            },
        }
    )
    # The PostSync check Job serves nothing: no ingress at all (every pod has a policy).
    objs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(p, "check", names.check_name(p)),
            "spec": {
                "podSelector": {"matchLabels": names.selector(p, "check")},
                # Ingress listed with no rules denies all (the "default deny" of the NetworkPolicy docs).
                "policyTypes": ["Ingress"],
            },
        }
    )
    objs.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(p, "triton", names.triton_name(p)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": names.selector(p, "triton")}},
        }
    )
    return objs
