"""Does the IngressClass the site's Ingresses name exist?

An Ingress whose class no controller claims is stored and never served: Argo CD reports it
Progressing forever (no address), or Healthy under the override of docs/gitops.md, while clients
get connection errors.
"""

from __future__ import annotations

from pipelines.config.model import Site
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.result import Finding, failed, passed, skipped
from pipelines.doctor.text import listing, site_file

CHECK = "ingress.class"


def ingress_class_finding(site: Site, exists: bool, known: list[str], controller: str = "") -> Finding:
    """The verdict on the site's ``ingress.className`` given the classes the cluster has (pure)."""
    if site.ingress is None:
        return skipped(CHECK, "-", "the site declares no ingress")
    name = site.ingress.class_name
    if exists:
        return passed(
            CHECK, name, f"IngressClass {name} exists" + (f" (controller {controller})" if controller else "")
        )
    return failed(
        CHECK,
        name,
        f"IngressClass {name} (ingress.className) does not exist; the cluster has: {listing(known)}",
        f"install the ingress controller that serves class {name}, or set ingress.className in "
        f"{site_file(site)} to one of the existing classes and run sonic render",
    )


def check_ingress_class(cluster: Cluster, site: Site) -> list[Finding]:
    if site.ingress is None:
        return [ingress_class_finding(site, False, [])]
    obj = cluster.get(f"/apis/networking.k8s.io/v1/ingressclasses/{site.ingress.class_name}")
    if obj is not None:
        return [ingress_class_finding(site, True, [], str((obj.get("spec") or {}).get("controller", "")))]
    known = sorted(
        str(c["metadata"]["name"]) for c in cluster.list("/apis/networking.k8s.io/v1/ingressclasses")
    )
    return [ingress_class_finding(site, False, known)]
