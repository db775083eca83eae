"""Do the namespaces the site file names exist, and do the experiments' enforce Pod Security?

- Every namespace granted to an experiment: Argo CD does not create it (``CreateNamespace=false``)
  and it must enforce the Pod Security level the rendered pods are written for
  (``pod-security.kubernetes.io/enforce``; docs/gitops.md, Bootstrapping a site).
- ``prometheus.namespace`` and ``ingress.namespace``: the NetworkPolicies admit scrapes by the
  ``kubernetes.io/metadata.name`` of the first, so a wrong name silently blocks metrics.
- Any other namespace an object of the site's share goes into (``sonic-pipelines``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.config.model import Site
from pipelines.config.names import POD_SECURITY_LEVEL
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.result import Finding, failed, passed
from pipelines.doctor.text import command, site_file

CHECK = "namespace"
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


def granted_namespaces(site: Site) -> dict[str, tuple[str, ...]]:
    """Namespace -> the experiments granted it at ``site``."""
    out: dict[str, list[str]] = {}
    for experiment, grant in sorted(site.experiments.items()):
        for ns in grant.namespaces:
            out.setdefault(ns, []).append(experiment)
    return {ns: tuple(exps) for ns, exps in sorted(out.items())}


def _label_fix(name: str, overwrite: bool) -> str:
    words = ["kubectl", "label", "namespace", name, f"{ENFORCE_LABEL}={POD_SECURITY_LEVEL}"]
    return command(*words, *(["--overwrite"] if overwrite else []))


def granted_finding(name: str, experiments: tuple[str, ...], ns: Mapping[str, Any] | None) -> Finding:
    """The verdict on one granted namespace, from its object (None: it does not exist)."""
    owner = f"granted to {', '.join(experiments)}"
    if ns is None:
        return failed(
            CHECK,
            name,
            f"namespace {name} ({owner}) does not exist; Argo CD does not create it",
            f"{command('kubectl', 'create', 'namespace', name)} && {_label_fix(name, False)}",
        )
    if (ns.get("status") or {}).get("phase") == "Terminating":
        return failed(
            CHECK,
            name,
            f"namespace {name} ({owner}) is being deleted",
            f"wait, then re-create it: {_label_fix(name, False)}",
        )
    level = ((ns.get("metadata") or {}).get("labels") or {}).get(ENFORCE_LABEL)
    if level is None:
        return failed(
            CHECK,
            name,
            f"namespace {name} ({owner}) has no {ENFORCE_LABEL} label; the rendered pods are written for "
            f"Pod Security {POD_SECURITY_LEVEL!r} and the docs promise it is enforced",
            f"label namespace {name}: {_label_fix(name, False)}",
        )
    if level != POD_SECURITY_LEVEL:
        return failed(
            CHECK,
            name,
            f"namespace {name} ({owner}) enforces Pod Security {level!r}, not {POD_SECURITY_LEVEL!r}",
            f"label namespace {name}: {_label_fix(name, True)}",
        )
    return passed(CHECK, name, f"exists ({owner}), enforces Pod Security {POD_SECURITY_LEVEL}")


def declared_finding(site: Site, name: str, field: str, why: str, ns: Mapping[str, Any] | None) -> Finding:
    """The verdict on a namespace the site file declares for a component (Prometheus, ingress)."""
    if ns is not None:
        return passed(CHECK, name, f"exists ({field})")
    return failed(
        CHECK,
        name,
        f"namespace {name} ({field}) does not exist: {why}",
        f"set {field} in {site_file(site)} to the namespace it really runs in, then run sonic render",
    )


def other_finding(
    name: str, files: tuple[str, ...], created_by: str | None, ns: Mapping[str, Any] | None
) -> Finding:
    """A namespace objects of the share go into, that the site file does not grant."""
    if ns is not None:
        return passed(CHECK, name, "exists")
    used = f"objects of {', '.join(files[:3])}{' ...' if len(files) > 3 else ''} go there"
    fix = (
        command("kubectl", "apply", "-f", created_by)
        if created_by
        else command("kubectl", "create", "namespace", name)
    )
    return failed(CHECK, name, f"namespace {name} does not exist; {used}", fix)


def check_namespaces(
    cluster: Cluster, site: Site, targets: Mapping[str, tuple[str, ...]], created_by: Mapping[str, str]
) -> list[Finding]:
    """``targets``: namespace -> files with objects there; ``created_by``: namespace -> the file creating it."""

    def read(name: str) -> Mapping[str, Any] | None:
        answer: Mapping[str, Any] | None = cluster.get(f"/api/v1/namespaces/{name}")
        return answer

    granted = granted_namespaces(site)
    out = [granted_finding(ns, exps, read(ns)) for ns, exps in granted.items()]
    declared: dict[str, Finding] = {}
    if site.prometheus is not None:
        ns = site.prometheus.namespace
        declared[ns] = declared_finding(
            site,
            ns,
            "prometheus.namespace",
            "the NetworkPolicies admit Prometheus scrapes from it by name, so no metrics would reach Prometheus",
            read(ns),
        )
    if site.ingress is not None and site.ingress.namespace not in declared:
        ns = site.ingress.namespace
        declared[ns] = declared_finding(
            site, ns, "ingress.namespace", "the site file says the ingress controller runs there", read(ns)
        )
    out += [f for ns, f in declared.items() if ns not in granted]
    # Argo CD's namespace has its own check (argocd.cluster), with a better fix than "create it".
    skip = set(granted) | set(declared) | {site.argocd.namespace}
    out += [
        other_finding(ns, files, created_by.get(ns), read(ns))
        for ns, files in targets.items()
        if ns not in skip
    ]
    return out
