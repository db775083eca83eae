"""Namespaces that belong to the cluster and the platform: no site grants them, no deployment uses them.

A deployment's objects (ServiceAccounts, NetworkPolicies, Deployments, the PostSync Job) in
``kube-system``, in Argo CD's namespace or in the pipelines' would sit beside the tokens and
controllers that run the whole site, and its NetworkPolicies would change who may reach them.
"""

from __future__ import annotations

from pipelines.config.model import Site

# The namespace the Argo Workflows pipelines run in (pipelines.workflows.settings uses it).
PIPELINES_NAMESPACE = "sonic-pipelines"

# The cluster's own, Argo CD's and Argo Workflows/Events', the pipelines', and the usual homes of
# cluster add-ons. Every name with a prefix of RESERVED_NAMESPACE_PREFIXES is reserved too.
RESERVED_NAMESPACES = (
    "default",
    "argo",
    "argocd",
    "argo-events",
    "argo-rollouts",
    "keda",
    "cert-manager",
    "gpu-operator",
    "local-path-storage",
    PIPELINES_NAMESPACE,
)
RESERVED_NAMESPACE_PREFIXES = ("kube-", "openshift-")


def reserved_reason(namespace: str, site: Site, *, prometheus: bool = True) -> str | None:
    """Why ``namespace`` may not hold an experiment's deployments at ``site``, or None.

    ``prometheus=False`` leaves out the site's Prometheus namespace (a rule of its own reports
    a site that grants it).
    """
    if namespace in RESERVED_NAMESPACES:
        return "it is reserved for the cluster and the platform"
    prefix = next((x for x in RESERVED_NAMESPACE_PREFIXES if namespace.startswith(x)), None)
    if prefix is not None:
        return f"namespaces starting with {prefix!r} belong to the cluster"
    if namespace == site.argocd.namespace:
        return f"Argo CD runs there (argocd.namespace of site {site.name!r})"
    if site.ingress is not None and namespace == site.ingress.namespace:
        return f"the ingress controller runs there (ingress.namespace of site {site.name!r})"
    if prometheus and site.prometheus is not None and namespace == site.prometheus.namespace:
        return f"Prometheus runs there (prometheus.namespace of site {site.name!r})"
    return None


# Experiment names that would mean something else to Argo CD: an experiment's AppProject is
# named after it, and "default" is Argo CD's built-in project, which admits every source and
# destination.
RESERVED_EXPERIMENT_NAMES = ("default",)
