"""Safety objects of a deployment, and the pod/container security settings every pod uses.

- ServiceAccounts without token automount (no pod here talks to the Kubernetes API).
- NetworkPolicies: Triton accepts only Envoy (gRPC) and Prometheus (metrics); Envoy accepts
  clients on its gRPC listener and Prometheus on its stats listener, nothing else (the admin
  interface is bound to 127.0.0.1 inside the pod anyway).
- A PodDisruptionBudget for Triton: node drains take one replica at a time.

Prometheus is recognised by namespace: the namespace named in an in-cluster Prometheus URL
(``http://<service>.<namespace>.svc...``), and any namespace labelled
``sonic.fastml.org/prometheus: "true"`` (sites with an external Prometheus or agent label the
namespace where their scraper runs).
"""

from __future__ import annotations

import re
from typing import Any

from pipelines.config.model import Site, SiteDeployment
from pipelines.modelrepo.lock import Lock
from pipelines.render import names
from pipelines.render.objects import meta

PROMETHEUS_NAMESPACE_LABEL = "sonic.fastml.org/prometheus"
_IN_CLUSTER = re.compile(r"^https?://[a-z0-9][-a-z0-9]*\.([a-z0-9][-a-z0-9]*)\.svc(\.|:|/|$)")


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


def prometheus_peers(site: Site) -> list[dict[str, Any]]:
    """NetworkPolicy peers that stand for the site's Prometheus (see the module docstring)."""
    peers: list[dict[str, Any]] = [
        {"namespaceSelector": {"matchLabels": {PROMETHEUS_NAMESPACE_LABEL: "true"}}}
    ]
    m = _IN_CLUSTER.match(site.prometheus.url) if site.prometheus else None
    if m:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": m.group(1)}}})
    return peers


def render_security(p: SiteDeployment, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
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
    prom = prometheus_peers(site)
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
                    {"from": prom, "ports": [{"protocol": "TCP", "port": names.TRITON_METRICS}]},
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
                    # Clients: in-cluster jobs and the ingress controller, from anywhere.
                    {"ports": [{"protocol": "TCP", "port": names.ENVOY_GRPC}]},
                    {"from": prom, "ports": [{"protocol": "TCP", "port": names.ENVOY_STATS}]},
                ],
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
