"""Would the cluster accept every object of the site's share? A server-side dry-run apply of each.

This is the sync Argo CD will run, minus the storing: the API server validates each object
against its schema (CRDs included), runs admission (Pod Security, quotas, policies, webhooks) and
answers. Refusals are reported with the file they come from. Pod Security warnings on workloads
are failures too: the server stores the Deployment, then refuses every pod its ReplicaSet creates.

Objects whose kind is not served, or whose namespace does not exist, are not sent: the
``api.kinds`` and ``namespace`` checks already report why, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipelines.config import layout
from pipelines.doctor.cluster import ApiError, Cluster
from pipelines.doctor.manifests import Manifest
from pipelines.doctor.result import Finding, failed, passed, skipped

CHECK = "apply.dry-run"
POD_SECURITY_WARNING = "would violate PodSecurity"


def refusal_fix(m: Manifest) -> str:
    """What to do about a refused object: fix the cluster, or the source of a generated file."""
    if m.path.startswith((f"{layout.RENDERED_DIR}/", f"{layout.ARGOCD_DIR}/")):
        source = f"its source ({layout.EXPERIMENTS_DIR}/ or the site file) and run sonic render"
    else:
        source = "its source in pipelines/workflows/ and run sonic pipelines render"
    return f"fix what the API server names on the cluster (CRD version, admission policy, quota), or {source}"


def outcome(m: Manifest, error: ApiError | None, warnings: Sequence[str]) -> Finding | None:
    """The finding for one object's dry run; None when it was accepted without a word (pure)."""
    if error is not None:
        return failed(CHECK, m.describe(), f"refused (HTTP {error.status}): {error.message}", refusal_fix(m))
    pod_security = [w for w in warnings if POD_SECURITY_WARNING in w]
    if pod_security:
        return failed(
            CHECK,
            m.describe(),
            f"accepted, but its pods would be refused: {'; '.join(pod_security)}",
            "the namespace enforces a stricter Pod Security level than the pods meet: " + refusal_fix(m),
        )
    if warnings:
        return passed(CHECK, m.describe(), f"accepted with warnings: {'; '.join(warnings)}")
    return None


def check_dry_run(cluster: Cluster, manifests: Sequence[Manifest]) -> list[Finding]:
    out: list[Finding] = []
    existing: dict[str, bool] = {}
    unserved: list[Manifest] = []
    no_namespace: list[Manifest] = []
    accepted = 0
    for m in manifests:
        res = cluster.resource(m.api_version, m.kind)
        if res is None:
            unserved.append(m)
            continue
        body: dict[str, Any] = dict(m.body)
        if res.namespaced:
            ns = m.namespace or "default"
            if ns not in existing:
                existing[ns] = cluster.get(f"/api/v1/namespaces/{ns}") is not None
            if not existing[ns]:
                no_namespace.append(m)
                continue
            # Argo CD puts an object without a namespace into the Application's destination namespace.
            body["metadata"] = {**(m.body.get("metadata") or {}), "namespace": ns}
        path = cluster.object_path(m.api_version, m.kind, m.name, m.namespace)
        assert path is not None  # the kind is served (checked above)
        try:
            warnings = cluster.dry_run_apply(path, body)
            error = None
        except ApiError as exc:
            warnings, error = (), exc
        finding = outcome(m, error, warnings)
        if finding is None or not finding.failed:
            accepted += 1
        if finding is not None:
            out.append(finding)
    if unserved:
        kinds = sorted({str(m.kind_ref) for m in unserved})
        out.append(
            skipped(
                CHECK,
                f"{len(unserved)} object(s)",
                f"not sent: kinds not served ({', '.join(kinds)}; see api.kinds)",
            )
        )
    if no_namespace:
        names = sorted({m.namespace or "default" for m in no_namespace})
        out.append(
            skipped(
                CHECK,
                f"{len(no_namespace)} object(s)",
                f"not sent: namespaces missing ({', '.join(names)}; see namespace)",
            )
        )
    if accepted:
        files = len({m.path for m in manifests})
        out.insert(
            0,
            passed(CHECK, f"{accepted} object(s)", f"accepted by a server-side dry run (from {files} files)"),
        )
    elif not manifests:
        out.append(skipped(CHECK, "-", "nothing is rendered for this site"))
    return out
