"""Can Argo CD deploy to the site's ``argocd.server``?

Every Application of the site's ApplicationSet has ``destination.server: <argocd.server>``. Argo
CD knows a destination from a cluster Secret in its namespace (label
``argocd.argoproj.io/secret-type: cluster``, ``data.server`` the URL) - what ``argocd cluster add``
writes - or, for ``https://kubernetes.default.svc``, from its built-in in-cluster entry (unless
``cluster.inClusterEnabled: "false"`` in ``argocd-cm``). Otherwise every Application reports
"cluster not found" and nothing syncs. This reads the cluster the kubeconfig points at, where
the Argo CD namespace is expected.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.config.model import Site
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.result import Finding, failed, passed
from pipelines.doctor.text import command, listing, site_file

CHECK = "argocd.cluster"
IN_CLUSTER = "https://kubernetes.default.svc"
SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"


def _same_server(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def registered_servers(secrets: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """server URL -> name of the cluster Secret registering it."""
    out = {}
    for s in secrets:
        raw = (s.get("data") or {}).get("server")
        if raw:
            out[base64.b64decode(raw).decode("utf-8", "replace").strip()] = str(s["metadata"]["name"])
        elif (s.get("stringData") or {}).get("server"):
            out[str(s["stringData"]["server"])] = str(s["metadata"]["name"])
    return out


def argocd_finding(
    site: Site,
    namespace_exists: bool,
    secrets: Sequence[Mapping[str, Any]],
    argocd_cm: Mapping[str, Any] | None,
) -> Finding:
    """The verdict from Argo CD's namespace, its cluster Secrets and argocd-cm (pure)."""
    server, ns = site.argocd.server, site.argocd.namespace
    if not namespace_exists:
        return failed(
            CHECK,
            server,
            f"namespace {ns} (argocd.namespace) does not exist: Argo CD does not run there on this cluster",
            f"install Argo CD into {ns} (docs/gitops.md, Bootstrapping a site), or set argocd.namespace in "
            f"{site_file(site)} to where it runs",
        )
    if _same_server(server, IN_CLUSTER):
        disabled = (
            str(((argocd_cm or {}).get("data") or {}).get("cluster.inClusterEnabled", "true")).lower()
            == "false"
        )
        if disabled:
            return failed(
                CHECK,
                server,
                f'argocd.server is the in-cluster destination, but argocd-cm in {ns} sets cluster.inClusterEnabled: "false"',
                f"remove cluster.inClusterEnabled from argocd-cm ({command('kubectl', 'edit', 'configmap', 'argocd-cm', '-n', ns)})",
            )
        return passed(
            CHECK, server, "the in-cluster destination, which Argo CD knows without a cluster Secret"
        )
    known = registered_servers(secrets)
    name = next((n for url, n in known.items() if _same_server(url, server)), None)
    if name is not None:
        return passed(CHECK, server, f"registered in Argo CD by cluster Secret {ns}/{name}")
    return failed(
        CHECK,
        server,
        f"Argo CD in {ns} has no cluster Secret for {server} (argocd.server); it knows: {listing(sorted(known))}",
        f"register the cluster: argocd cluster add CONTEXT --name {site.name} (the context's server must be "
        f"{server}), or create a Secret in {ns} labelled {SECRET_TYPE_LABEL}=cluster with server: {server}",
    )


def check_argocd(cluster: Cluster, site: Site) -> list[Finding]:
    ns = site.argocd.namespace
    exists = cluster.get(f"/api/v1/namespaces/{ns}") is not None
    secrets = (
        cluster.list(f"/api/v1/namespaces/{ns}/secrets", label_selector=f"{SECRET_TYPE_LABEL}=cluster")
        if exists
        else []
    )
    cm = cluster.get(f"/api/v1/namespaces/{ns}/configmaps/argocd-cm") if exists else None
    return [argocd_finding(site, exists, secrets, cm)]
