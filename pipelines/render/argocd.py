"""Argo CD: what deploys the rendered tree, and in which order.

- One **AppProject per experiment**: sources = only this repository; destinations = only the
  experiment's namespaces, each at its site's API server; no cluster-scoped kind at all;
  namespaced kinds = exactly :data:`NAMESPACED_KINDS`, what the renderers produce.
- One **ApplicationSet per site** (list generator: one element per rendered deployment
  directory) generating one Application per deployment: the site's destination, project =
  the experiment, automated sync with prune and self-heal, retries with backoff.
- **Sync waves** on every rendered object: configuration, volumes, accounts and policies (0)
  -> Triton (1) -> Envoy (2) -> ScaledObject (3). The ScaledObject comes last so that KEDA
  takes over a Deployment that exists and is healthy.
- A **PostSync hook Job** per deployment running ``sonic check`` against the Envoy Service.

Each site's directory (``gitops/argocd/<site>/``) holds the AppProjects of the experiments
the site admits and the site's ApplicationSet, in the namespace where that site's Argo CD
runs. The AppProjects are identical in every site directory (apart from that namespace),
so one central Argo CD may apply several site directories without conflicts.
"""

from __future__ import annotations

from typing import Any

from pipelines.config.model import Experiment, Site, SiteDeployment
from pipelines.modelrepo.lock import Lock
from pipelines.render import names
from pipelines.render.envoy import PROMETHEUS_TOKEN_PATH
from pipelines.render.gitrepo import DEFAULT, Repository
from pipelines.render.objects import meta
from pipelines.render.security import container_security, pod_security

SYNC_WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
CHECK_TOKEN_DIR = "/var/run/sonic/check-token"

# (API group, kind) of everything a deployment directory may contain.
NAMESPACED_KINDS: tuple[tuple[str, str], ...] = (
    ("", "ConfigMap"),
    ("", "PersistentVolumeClaim"),
    ("", "Service"),
    ("", "ServiceAccount"),
    ("apps", "Deployment"),
    ("batch", "Job"),
    ("keda.sh", "ScaledObject"),
    ("keda.sh", "TriggerAuthentication"),
    ("monitoring.coreos.com", "PrometheusRule"),
    ("monitoring.coreos.com", "ServiceMonitor"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("policy", "PodDisruptionBudget"),
)


def sync_wave(obj: dict[str, Any]) -> int | None:
    """The object's sync wave (None for hooks, which run after the waves)."""
    kind = obj["kind"]
    component = obj["metadata"]["labels"].get("app.kubernetes.io/name")
    if kind == "Job":
        return None
    if kind == "ScaledObject":
        return 3
    if kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget"):
        return {"triton": 1, "envoy": 2}.get(str(component), 0)
    return 0  # ConfigMaps (Envoy's too), claims, accounts, policies, monitoring, trigger auth


def annotate_waves(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set :data:`SYNC_WAVE` on every object that takes part in the waves."""
    for obj in objs:
        wave = sync_wave(obj)
        if wave is not None:
            obj["metadata"].setdefault("annotations", {})[SYNC_WAVE] = str(wave)
    return objs


def render_check_job(
    p: SiteDeployment, site: Site, lock: Lock | None, repo: Repository = DEFAULT
) -> list[dict[str, Any]]:
    """The PostSync hook Job: ``sonic check`` from the pipeline image against the Envoy Service."""
    args = [
        "check",
        "--endpoint",
        f"{names.envoy_service_host(p)}:{names.ENVOY_GRPC}",
        "--site",
        p.site,
        names.deployment_ref(p),
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    auth = site.prometheus.auth if site.prometheus else None
    if auth is not None:
        token_dir, token_file = PROMETHEUS_TOKEN_PATH.rsplit("/", 1)
        args[-1:-1] = ["--prometheus-token-file", PROMETHEUS_TOKEN_PATH]
        mounts.append({"name": "prometheus-token", "mountPath": token_dir, "readOnly": True})
        volumes.append(
            {
                "name": "prometheus-token",
                "secret": {
                    "secretName": auth.secret_ref.name,
                    "items": [{"key": auth.secret_ref.key, "path": token_file}],
                    "defaultMode": 0o440,
                },
            }
        )
    if p.envoy.auth is not None and p.envoy.auth.jwt is not None:
        secret, key = repo.check_token_secret
        args[-1:-1] = ["--token-file", f"{CHECK_TOKEN_DIR}/token"]
        mounts.append({"name": "check-token", "mountPath": CHECK_TOKEN_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "check-token",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": key, "path": "token"}],
                    "defaultMode": 0o440,
                },
            }
        )
    container = {
        "name": "check",
        "image": repo.pipeline_image,
        "command": ["sonic"],
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": container_security(read_only_root=True),
        "volumeMounts": mounts,
    }
    m = meta(p, "check", names.check_name(p))
    m["annotations"] = {HOOK: "PostSync", HOOK_DELETE_POLICY: "BeforeHookCreation"}
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": m,
            "spec": {
                "backoffLimit": 1,
                # The check bounds itself (checks.timeout); the margin covers image pull and start-up.
                "activeDeadlineSeconds": int(p.checks.timeout) + 300,
                "template": {
                    "metadata": {"labels": names.labels(p, "check")},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": names.check_name(p),
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": pod_security(
                            repo.pipeline_user, secrets=any("secret" in v for v in volumes)
                        ),
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
            },
        }
    ]


def _argocd_labels(site: Site) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "sonic",
        "app.kubernetes.io/managed-by": names.MANAGED_BY,
        "sonic.fastml.org/site": site.name,
    }


def app_project(exp: Experiment, site: Site, sites: dict[str, Site], repo: Repository) -> dict[str, Any]:
    """The experiment's AppProject, in ``site``'s Argo CD namespace."""
    destinations = [
        {"server": sites[s].argocd.server, "namespace": ns}
        for s in sorted(exp.sites)
        if s in sites and exp.name in sites[s].experiments
        for ns in sorted(set(exp.sites[s].namespaces) & set(sites[s].experiments[exp.name].namespaces))
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {
            "name": exp.name,
            "namespace": site.argocd.namespace,
            # No site label: the same project is written into every site directory.
            "labels": {
                "app.kubernetes.io/part-of": "sonic",
                "app.kubernetes.io/managed-by": names.MANAGED_BY,
                "sonic.fastml.org/experiment": exp.name,
            },
            "finalizers": [RESOURCES_FINALIZER],
        },
        "spec": {
            "description": (exp.description or f"SONIC deployments of {exp.name}")
            + f" (owners: {', '.join(exp.owners)})",
            "sourceRepos": [repo.url],
            "destinations": destinations,
            "clusterResourceWhitelist": [],
            "namespaceResourceWhitelist": [{"group": g, "kind": k} for g, k in NAMESPACED_KINDS],
        },
    }


def application_set(site: Site, placements: list[SiteDeployment], repo: Repository) -> dict[str, Any]:
    """The site's ApplicationSet: one Application per deployment rendered for the site."""
    elements = [
        {
            "name": names.application_name(p),
            "experiment": p.experiment,
            "deployment": p.name,
            "namespace": p.namespace,
            "path": names.rendered_dir(p),
        }
        for p in sorted(placements, key=lambda x: (x.experiment, x.name))
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": f"sonic-{site.name}",
            "namespace": site.argocd.namespace,
            "labels": _argocd_labels(site),
        },
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"list": {"elements": elements}}],
            "template": {
                "metadata": {
                    "name": "{{.name}}",
                    "labels": {
                        **_argocd_labels(site),
                        "sonic.fastml.org/experiment": "{{.experiment}}",
                        "sonic.fastml.org/deployment": "{{.deployment}}",
                    },
                    # Deleting an Application (deployment removed from the list) deletes its objects.
                    "finalizers": [RESOURCES_FINALIZER],
                },
                "spec": {
                    "project": "{{.experiment}}",
                    "source": {"repoURL": repo.url, "targetRevision": repo.branch, "path": "{{.path}}"},
                    "destination": {"server": site.argocd.server, "namespace": "{{.namespace}}"},
                    "revisionHistoryLimit": 5,
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": [
                            "CreateNamespace=false",
                            "PruneLast=true",
                            "FailOnSharedResource=true",
                        ],
                        "retry": {
                            "limit": 5,
                            "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"},
                        },
                    },
                },
            },
        },
    }


def render_argocd_site(
    site: Site,
    experiments: dict[str, Experiment],
    sites: dict[str, Site],
    placements: list[SiteDeployment],
    repo: Repository,
) -> list[dict[str, Any]]:
    """Everything a site admin applies once: the AppProjects of the admitted experiments and the ApplicationSet."""
    projects = [
        app_project(experiments[e], site, sites, repo) for e in sorted(site.experiments) if e in experiments
    ]
    return [*projects, application_set(site, placements, repo)]
