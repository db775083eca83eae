"""Does the cluster serve every kind, at the version, that the site's objects use?

The kinds come from the committed tree (:func:`pipelines.doctor.manifests.needed_kinds`): KEDA's
ScaledObject only where a deployment autoscales, the Prometheus Operator's kinds only at sites
with ``prometheus.operator``, Argo Events only on the cluster that receives webhooks. A CRD that
is installed but does not serve the version we render is as broken as a missing one: Argo CD's
sync fails on the first such object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipelines.doctor.cluster import ApiResource, Cluster
from pipelines.doctor.manifests import KindRef
from pipelines.doctor.result import Finding, failed, passed
from pipelines.doctor.text import listing

CHECK = "api.kinds"

# Who provides a custom kind, and from which version on it serves what we render
# (docs/gitops.md and docs/workflows.md, "Required versions" / "Installing at a site").
_ARGO_CD = "Argo CD 2.8+ (docs/gitops.md, Bootstrapping a site)"
_WORKFLOWS = "Argo Workflows v4.0+ (docs/workflows.md, Installing at a site)"
_EVENTS = "Argo Events v1.9+ (docs/workflows.md, Installing at a site)"
PROVIDERS: Mapping[tuple[str, str | None], str] = {
    ("keda.sh", None): "KEDA 2.10+ (docs/gitops.md, Required versions)",
    ("monitoring.coreos.com", None): (
        "the Prometheus Operator CRDs (or set prometheus.operator: false in the site file when the "
        "site's Prometheus runs without the operator)"
    ),
    ("argoproj.io", "Application"): _ARGO_CD,
    ("argoproj.io", "ApplicationSet"): _ARGO_CD,
    ("argoproj.io", "AppProject"): _ARGO_CD,
    ("argoproj.io", "Workflow"): _WORKFLOWS,
    ("argoproj.io", "WorkflowTemplate"): _WORKFLOWS,
    ("argoproj.io", "CronWorkflow"): _WORKFLOWS,
    ("argoproj.io", "WorkflowTaskResult"): _WORKFLOWS,
    ("argoproj.io", "Sensor"): _EVENTS,
    ("argoproj.io", "EventSource"): _EVENTS,
}


def provider(ref: KindRef) -> str | None:
    """What to install for a custom kind; None for Kubernetes' own groups."""
    return PROVIDERS.get((ref.group, ref.kind)) or PROVIDERS.get((ref.group, None))


def kind_findings(
    needed: Sequence[KindRef],
    served_versions: Mapping[str, Sequence[str]],
    served: Mapping[str, Mapping[str, ApiResource] | None],
) -> list[Finding]:
    """One finding per group/version: what discovery serves against what the objects need (pure).

    ``served_versions``: group -> versions (from /apis); ``served``: group/version -> kinds.
    """
    out: list[Finding] = []
    by_gv: dict[str, list[KindRef]] = {}
    for ref in needed:
        by_gv.setdefault(ref.group_version, []).append(ref)
    for gv, refs in sorted(by_gv.items()):
        kinds = served.get(gv)
        missing = [r for r in refs if kinds is None or r.kind not in kinds]
        if not missing:
            out.append(passed(CHECK, gv, f"serves {', '.join(sorted(r.kind for r in refs))}"))
            continue
        for ref in missing:
            out.append(_missing(ref, served_versions.get(ref.group, ()), kinds is not None))
    return out


def _missing(ref: KindRef, versions: Sequence[str], version_served: bool) -> Finding:
    what = provider(ref)
    if versions and not version_served:
        # The group is there at other versions: an older (or much newer) release is installed.
        message = (
            f"{ref.kind} is not served at {ref.group_version}: the cluster serves {ref.group or 'core'} "
            f"at {listing(list(versions))} only"
        )
        fix = (
            f"install {what}, which serves {ref.group_version}"
            if what
            else f"upgrade the cluster to serve {ref.group_version}"
        )
    elif versions:
        message = f"{ref.group_version} is served but has no kind {ref.kind} (its CRD is not installed)"
        fix = f"install {what}" if what else f"install the CRD of {ref}"
    else:
        message = f"the API group {ref.group or 'core'} is not served: no CRD of {ref} is installed"
        fix = f"install {what}" if what else f"install the CRD of {ref}"
    return failed(CHECK, str(ref), message, fix)


def check_kinds(cluster: Cluster, needed: Sequence[KindRef]) -> list[Finding]:
    versions = cluster.served_versions()
    served = {
        ref.group_version: cluster.resources(ref.group_version)
        if ref.version in versions.get(ref.group, ())
        else None
        for ref in needed
    }
    return kind_findings(needed, versions, served)
