"""Do the StorageClasses and PersistentVolumeClaims the site's pods mount exist?

A pod whose claim is missing stays ``ContainerCreating`` (and Argo CD's sync waits for it); a claim
of a missing StorageClass stays ``Pending`` forever. Needed are:

- StorageClasses: ``storage.cvmfs.storageClass`` and every ``storageClassName`` of a rendered claim;
- claims: ``storage.snapshots.claim`` in every granted namespace (the schema promises it there:
  the model builds write it, Triton reads it), and every claim the site's objects mount but do not
  create (a ``storage.pvcs`` claim is needed where a deployment mounts it, the site file does not
  say in which namespaces it exists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.config.model import Site
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.manifests import ClaimRef
from pipelines.doctor.namespaces import granted_namespaces
from pipelines.doctor.result import Finding, failed, passed, skipped
from pipelines.doctor.text import listing, site_file

CLASS_CHECK = "storage.class"
CLAIM_CHECK = "storage.claim"
SNAPSHOT_FIELD = "storage.snapshots.claim"


def needed_classes(site: Site, from_tree: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """StorageClass -> who needs it (the site-file field, or rendered files)."""
    out = {name: list(files) for name, files in from_tree.items()}
    cvmfs = site.storage.cvmfs.storage_class if site.storage.cvmfs else None
    if cvmfs:
        out.setdefault(cvmfs, []).insert(0, "storage.cvmfs.storageClass")
    return {k: tuple(v) for k, v in sorted(out.items())}


@dataclass(frozen=True)
class NeededClaim:
    namespace: str
    name: str
    used_by: tuple[str, ...]
    shared_writable: bool  # written by the builds and read by pods on many nodes: ReadWriteMany


def needed_claims(site: Site, refs: Sequence[ClaimRef]) -> list[NeededClaim]:
    """The claims that must exist before Argo CD syncs (pure)."""
    snapshot = site.storage.snapshots.claim if site.storage.snapshots else None
    out: dict[tuple[str, str], list[str]] = {}
    if snapshot:
        for ns in granted_namespaces(site):
            out[(ns, snapshot)] = [SNAPSHOT_FIELD]
    for ref in refs:
        out.setdefault((ref.namespace, ref.name), []).extend(ref.used_by)
    return [NeededClaim(ns, name, tuple(used), name == snapshot) for (ns, name), used in sorted(out.items())]


def class_finding(
    site: Site, name: str, used_by: tuple[str, ...], sc: Mapping[str, Any] | None, known: list[str]
) -> Finding:
    who = ", ".join(used_by)
    if sc is not None:
        return passed(CLASS_CHECK, name, f"exists (provisioner {sc.get('provisioner', '?')})")
    fix = (
        f"install the CSI driver and StorageClass {name}, or set storage.cvmfs.storageClass in {site_file(site)} "
        "to an existing class and run sonic render"
        if "storage.cvmfs.storageClass" in used_by
        else f"create StorageClass {name}"
    )
    return failed(
        CLASS_CHECK,
        name,
        f"StorageClass {name} (used by {who}) does not exist; the cluster has: {listing(known)}",
        fix,
    )


def claim_finding(site: Site, claim: NeededClaim, pvc: Mapping[str, Any] | None) -> Finding:
    target = f"{claim.namespace}/{claim.name}"
    who = ", ".join(claim.used_by[:3]) + (" ..." if len(claim.used_by) > 3 else "")
    if pvc is None:
        mode = "ReadWriteMany, " if claim.shared_writable else ""
        return failed(
            CLAIM_CHECK,
            target,
            f"PersistentVolumeClaim {claim.name} does not exist in namespace {claim.namespace} (needed by {who})",
            f"create it in {claim.namespace} ({mode}docs/gitops.md, Bootstrapping a site), or correct the claim "
            f"name in {site_file(site)}",
        )
    phase = (pvc.get("status") or {}).get("phase", "Pending")
    modes = list((pvc.get("spec") or {}).get("accessModes") or [])
    if phase == "Lost":
        return failed(
            CLAIM_CHECK,
            target,
            f"claim {target} is Lost: its volume is gone",
            f"re-create {target} on a working volume",
        )
    if claim.shared_writable and "ReadWriteMany" not in modes:
        return failed(
            CLAIM_CHECK,
            target,
            f"claim {target} has access modes {listing(modes)}: the model builds write it while Triton pods "
            "on several nodes read it, which needs ReadWriteMany",
            f"re-create {target} with accessModes [ReadWriteMany] on a StorageClass that offers it (NFS, CephFS ...)",
        )
    # Pending is normal under a WaitForFirstConsumer StorageClass: it binds with its first pod.
    return passed(CLAIM_CHECK, target, f"exists ({phase}, {listing(modes)})")


def check_storage_classes(
    cluster: Cluster, site: Site, classes_from_tree: Mapping[str, tuple[str, ...]]
) -> list[Finding]:
    out: list[Finding] = []
    known: list[str] | None = None  # listed once, and only to name the alternatives in a failure
    for name, used_by in needed_classes(site, classes_from_tree).items():
        sc = cluster.get(f"/apis/storage.k8s.io/v1/storageclasses/{name}")
        if sc is None and known is None:
            known = sorted(
                str(c["metadata"]["name"]) for c in cluster.list("/apis/storage.k8s.io/v1/storageclasses")
            )
        out.append(class_finding(site, name, used_by, sc, known or []))
    return out


def check_claims(cluster: Cluster, site: Site, refs: Sequence[ClaimRef]) -> list[Finding]:
    claims = needed_claims(site, refs)
    out = [
        claim_finding(
            site, c, cluster.get(f"/api/v1/namespaces/{c.namespace}/persistentvolumeclaims/{c.name}")
        )
        for c in claims
    ]
    mounted = {c.name for c in claims}
    out += [
        skipped(CLAIM_CHECK, name, f"storage.pvcs: nothing at site {site.name} mounts {name} yet")
        for name in site.storage.pvcs
        if name not in mounted
    ]
    return out
