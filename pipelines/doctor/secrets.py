"""Do the Secrets the site's objects read exist, with the keys they read?

The repository holds no Secret, only references (docs/gitops.md); a missing one shows up as a pod
stuck in ``ContainerCreating`` or a KEDA trigger that cannot authenticate, long after the sync.
Needed are the Secrets the committed objects reference (volumes, ``secretKeyRef``, ``envFrom``,
KEDA's ``secretTargetRef``, Ingress TLS) and those the site file promises in every granted
namespace (``prometheus.auth.secretRef``, ``ingress.tlsSecret``). Values are never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.config.model import Site
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.manifests import SecretRef
from pipelines.doctor.namespaces import granted_namespaces
from pipelines.doctor.result import Finding, failed, passed, skipped
from pipelines.doctor.text import command, listing

CHECK = "secret"


def promised_secrets(site: Site) -> list[SecretRef]:
    """The Secrets the site file says exist in each granted namespace (schemas/site.schema.json)."""
    out = []
    for ns in granted_namespaces(site):
        if site.prometheus is not None and site.prometheus.auth is not None:
            ref = site.prometheus.auth.secret_ref
            out.append(SecretRef(ns, ref.name, (ref.key,), ("prometheus.auth.secretRef",)))
        if site.ingress is not None and site.ingress.tls_secret:
            out.append(
                SecretRef(
                    ns, site.ingress.tls_secret, ("tls.crt", "tls.key"), ("ingress.tlsSecret",), tls=True
                )
            )
    return out


def create_command(ref: SecretRef) -> str:
    """The kubectl command that creates ``ref`` (with placeholders for the values)."""
    if ref.tls:
        return (
            command("kubectl", "create", "secret", "tls", ref.name, "-n", ref.namespace)
            + " --cert=CERT.pem --key=KEY.pem"
        )
    keys = ref.keys or ("KEY",)
    return command("kubectl", "create", "secret", "generic", ref.name, "-n", ref.namespace) + "".join(
        f" --from-file={k}=FILE" for k in keys
    )


def secret_finding(ref: SecretRef, secret: Mapping[str, Any] | None) -> Finding:
    """The verdict on one needed Secret from its object (None: absent). Pure."""
    target = f"{ref.namespace}/{ref.name}"
    who = ", ".join(ref.used_by[:3]) + (" ..." if len(ref.used_by) > 3 else "")
    if secret is None:
        if ref.optional:
            return skipped(CHECK, target, f"absent; optional for {who}")
        return failed(
            CHECK,
            target,
            f"Secret {ref.name} does not exist in namespace {ref.namespace} (read by {who})",
            create_command(ref),
        )
    have = set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())
    lacking = [k for k in ref.keys if k not in have]
    if lacking:
        return failed(
            CHECK,
            target,
            f"Secret {target} lacks key(s) {listing(lacking)} (read by {who}; it has: {listing(sorted(have))})",
            f"add the key(s): kubectl delete secret {ref.name} -n {ref.namespace} && {create_command(ref)}",
        )
    return passed(CHECK, target, f"exists with {listing(list(ref.keys)) if ref.keys else 'its keys'}")


def check_secrets(cluster: Cluster, refs: tuple[SecretRef, ...]) -> list[Finding]:
    return [
        secret_finding(ref, cluster.get(f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.name}"))
        for ref in refs
    ]
