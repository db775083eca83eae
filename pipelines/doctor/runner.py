"""Run every check of ``sonic site doctor`` against one cluster, in the order an admin fixes things.

Cluster first (version, kinds), then what the site file promises (namespaces, ingress class,
storage, Secrets, GPU nodes, Prometheus, Argo CD), then the dry-run apply that sums them up. A
check the API server does not let us run (403) fails with what access is missing; the others
still run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.config.model import Site
from pipelines.doctor import (
    apis,
    argocd,
    dryrun,
    gpus,
    ingress,
    namespaces,
    prometheus,
    secrets,
    storage,
    version,
)
from pipelines.doctor.cluster import ApiError, Cluster
from pipelines.doctor.manifests import (
    SiteShare,
    claim_refs,
    namespace_objects,
    needed_kinds,
    secret_refs,
    storage_classes,
    target_namespaces,
)
from pipelines.doctor.result import Finding, Report, failed

ACCESS_FIX = (
    "run the doctor as an identity that may get/list namespaces, nodes, storage and ingress classes, claims and "
    "Secrets, and patch (dry run) every kind of the site's objects; cluster-admin can"
)


@dataclass(frozen=True)
class Options:
    """What the admin tells the doctor beyond the site file."""

    prometheus_url: str | None = None  # instead of prometheus.url (a port-forward)
    prometheus_ca: Path | None = None  # CA bundle for Prometheus' certificate
    receives_webhooks: bool = False  # also the cluster of pr-validation and Argo Events


def diagnose(
    cluster: Cluster,
    site: Site,
    share: SiteShare,
    options: Options = Options(),
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Every finding about ``site`` on ``cluster``. Raises ClusterUnavailable if the server goes away."""
    manifests = share.manifests
    steps: list[tuple[str, Callable[[], list[Finding]]]] = [
        (version.CHECK, lambda: version.check_version(cluster, site)),
        (apis.CHECK, lambda: apis.check_kinds(cluster, needed_kinds(manifests))),
        (
            namespaces.CHECK,
            lambda: namespaces.check_namespaces(
                cluster, site, target_namespaces(manifests), namespace_objects(manifests)
            ),
        ),
        (ingress.CHECK, lambda: ingress.check_ingress_class(cluster, site)),
        (
            storage.CLASS_CHECK,
            lambda: storage.check_storage_classes(cluster, site, storage_classes(manifests)),
        ),
        (storage.CLAIM_CHECK, lambda: storage.check_claims(cluster, site, claim_refs(manifests))),
        (
            secrets.CHECK,
            lambda: secrets.check_secrets(cluster, secret_refs(manifests, secrets.promised_secrets(site))),
        ),
        (gpus.CHECK, lambda: gpus.check_gpu_classes(cluster, site)),
        (
            prometheus.CHECK,
            lambda: prometheus.check_prometheus(
                cluster, site, url_override=options.prometheus_url, ca_file=options.prometheus_ca
            ),
        ),
        (argocd.CHECK, lambda: argocd.check_argocd(cluster, site)),
        (dryrun.CHECK, lambda: dryrun.check_dry_run(cluster, manifests)),
    ]
    findings: list[Finding] = []
    for name, run in steps:
        if progress is not None:
            progress(name)
        try:
            findings += run()
        except ApiError as exc:
            # One refused read fails its check, not the run: the other checks still tell the admin something.
            findings.append(
                failed(
                    name,
                    exc.path or "-",
                    f"the API server refused a request: {exc}",
                    ACCESS_FIX
                    if exc.status in (401, 403)
                    else "retry; if it persists, check the API server's health",
                )
            )
    return Report(site.name, cluster.server, tuple(findings))
