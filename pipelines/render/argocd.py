"""Argo CD: what deploys the rendered tree, and in which order.

- One **AppProject per experiment**: sources = only this repository; destinations = only the
  experiment's namespaces, each at its site's API server; no cluster-scoped kind at all;
  namespaced kinds = exactly :data:`NAMESPACED_KINDS`, what the renderers produce.
- One **ApplicationSet per site** with a git *files* generator over the GitOps branch: every
  ``gitops/rendered/<site>/<experiment>/<deployment>/application.json`` there (written by
  :func:`application_file`, not listed in the directory's kustomization, so never applied)
  becomes one Application: the site's destination, project = the experiment, automated sync
  with prune and self-heal, retries with backoff. A deployment directory that reaches the
  branch creates its Application; one removed from it deletes the Application and its objects.
- **Sync waves** on every rendered object: configuration, accounts and policies (0)
  -> Triton and its CVMFS claim (1) -> Envoy (2) -> ScaledObject (3). The ScaledObject comes
  last so that KEDA takes over a Deployment that exists and is healthy. A claim shares the
  wave of the pods that mount it: with a ``WaitForFirstConsumer`` StorageClass it stays
  ``Pending`` (Progressing) until such a pod exists, so an earlier wave would never end.
- A **PostSync hook Job** per deployment running ``sonic check --spec`` against the Envoy
  Service, from a **check spec ConfigMap** (:mod:`pipelines.config.checkspec`): the pipeline image
  holds no configuration tree, so the Job brings the resolved deployment and its reference
  files along.

Each site's directory (``gitops/argocd/<site>/``) holds the AppProjects of the experiments
the site admits and the site's ApplicationSet, in the namespace where that site's Argo CD
runs. The AppProjects are identical in every site directory (apart from that namespace),
so one central Argo CD may apply several site directories without conflicts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from pipelines.config import checkspec as spec
from pipelines.config import names
from pipelines.config.footprint import CHECK_JOB
from pipelines.config.images import pinned
from pipelines.config.model import Experiment, Placement, Site
from pipelines.config.repository import DEFAULT, REPOSITORY_FILE, Repository
from pipelines.modelrepo.lock import Lock
from pipelines.render.envoy.gate import PROMETHEUS_TOKEN_PATH
from pipelines.render.errors import problem, require
from pipelines.render.objects import meta, prometheus_token_volume
from pipelines.render.objects import resources as container_resources
from pipelines.render.scanner import image_checks, skip_annotations, uid_checks
from pipelines.render.security import container_security, pod_security

SYNC_WAVE = "argocd.argoproj.io/sync-wave"
HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
CHECK_CLIENT_DIR = "/var/run/sonic/check-client"  # OAuth2 client credentials, read-only
CHECK_SPEC_DIR = "/etc/sonic/check"  # the check spec ConfigMap, read-only
CONFIGMAP_LIMIT = 1024 * 1024  # bytes of data + binaryData the API server accepts in one ConfigMap
APPLICATION_FILE = "application.json"  # the ApplicationSet's generator reads it; never applied

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
    # The in-namespace Prometheus' endpoint discovery (render/monitoring_stack.py): a Role and its
    # binding in the experiment's own namespace; never a ClusterRole (docs/security.md).
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
)


def sync_wave(obj: dict[str, Any]) -> int | None:
    """The object's sync wave (None for hooks, which run after the waves)."""
    kind = obj["kind"]
    component = obj["metadata"]["labels"].get(names.NAME_LABEL)
    if kind == "Job":
        return None
    if kind == "ScaledObject":
        return 3
    # A claim goes with the pods that mount it. Argo CD holds the next wave until every object
    # of this one is Healthy, and a Pending claim is Progressing (gitops-engine
    # pkg/health/health_pvc.go); a WaitForFirstConsumer claim binds only once a pod uses it.
    if kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget", "PersistentVolumeClaim"):
        return {"triton": 1, "envoy": 2}.get(str(component), 0)
    return 0  # ConfigMaps (Envoy's too), accounts, policies, monitoring, trigger auth


def ingress_health_lua() -> str:
    """The Argo CD health override for Ingresses that a site admin installs once in ``argocd-cm``.

    Argo CD calls an Ingress Healthy only once ``status.loadBalancer.ingress`` is set (gitops-engine
    pkg/health/health_ingress.go) and holds the next sync wave and the PostSync hook until then.
    Ingresses of sites whose controller never sets it carry
    :data:`names.INGRESS_STATUS_ANNOTATION`; this script reports those Healthy and keeps the
    built-in rule for every other Ingress (docs/gitops.md shows the argocd-cm entry).
    """
    return resources.files("pipelines.render").joinpath("lua/ingress_health.lua").read_text(encoding="utf-8")


def annotate_waves(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set :data:`SYNC_WAVE` on every object that takes part in the waves."""
    for obj in objs:
        wave = sync_wave(obj)
        if wave is not None:
            obj["metadata"].setdefault("annotations", {})[SYNC_WAVE] = str(wave)
    return objs


def render_check_spec(p: Placement, references: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """The check spec ConfigMap ``<name>-check``: ``deployment.json`` and the reference files.

    ``references``: each declared reference path -> its content (:func:`pipelines.config.checkspec.read_references`).

    Raises:
        RenderError: everything exceeds a ConfigMap's 1 MiB.
    """
    missing = [declared for declared in spec.reference_names(p) if declared not in references]
    require(not missing, "render.inputs.read_deployment_inputs", f"reference files not read: {missing}")
    bundle = spec.bundle(p, references)
    if bundle.size > CONFIGMAP_LIMIT:
        largest = max(bundle.references.items(), key=lambda kv: len(kv[1]), default=("", b""))
        raise problem(
            p,
            f"checks: the check spec ConfigMap {names.check_name(p)} would hold {bundle.size} bytes, "
            f"over Kubernetes' limit of {CONFIGMAP_LIMIT} (1 MiB) per ConfigMap; the largest part is "
            f"{len(largest[1])} bytes of reference data: use smaller checks.models[].reference files",
        )
    # Server-side apply: a client-side apply copies the whole object into an annotation, and
    # annotations are limited to 256 KiB, far below what a ConfigMap may hold.
    m = meta(p, "check", names.check_name(p), **{SYNC_OPTIONS: "ServerSideApply=true"})
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": m,
        "data": {spec.SPEC_FILE: bundle.spec},
    }
    if bundle.references:
        obj["binaryData"] = {
            name: base64.b64encode(data).decode("ascii") for name, data in sorted(bundle.references.items())
        }
    return [obj]


def render_check_job(
    p: Placement, site: Site, lock: Lock | None, repo: Repository = DEFAULT
) -> list[dict[str, Any]]:
    """The PostSync hook Job: ``sonic check --spec`` from the pipeline image against the Envoy Service.

    The image holds no configuration tree: the deployment comes from the check spec ConfigMap
    (:func:`render_check_spec`), mounted read-only, and the site's Prometheus is passed explicitly.
    """
    if site.require_image_digests and not pinned(repo.pipeline_image):
        # The same image runs the site's pipelines: refusing here stops `sonic render` (and CI).
        raise problem(
            p,
            f"pipelineImage {repo.pipeline_image!r} is pinned by tag only, but site {p.site!r} requires "
            f"image digests (requireImageDigests): the repository's maintainers can pin it in "
            f"{REPOSITORY_FILE} as '{repo.pipeline_image}@sha256:<digest>'",
            REPOSITORY_FILE,
        )
    args = [
        "check",
        "--spec",
        f"{CHECK_SPEC_DIR}/{spec.SPEC_FILE}",
        "--endpoint",
        f"{names.envoy_service_host(p)}:{names.ENVOY_GRPC}",
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "check-spec", "mountPath": CHECK_SPEC_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "check-spec", "configMap": {"name": names.check_name(p), "defaultMode": 0o444}},
    ]
    prometheus = names.prometheus_url(p, site)
    if prometheus is not None:
        args += ["--prometheus", prometheus]
    token = prometheus_token_volume(p, site)
    if token is not None:
        args += ["--prometheus-token-file", PROMETHEUS_TOKEN_PATH]
        mounts.append(token[0])
        volumes.append(token[1])
    if p.envoy.auth is not None and p.envoy.auth.jwt is not None:
        # Client credentials, not a token: the check asks the identity provider for a fresh
        # token when it runs (stored tokens expire in minutes). All keys: scope and audience
        # are optional. The deployment's own client (names.check_client_secret), never a shared one.
        args += ["--client-credentials", CHECK_CLIENT_DIR]
        mounts.append({"name": "check-client", "mountPath": CHECK_CLIENT_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "check-client",
                "secret": {"secretName": names.check_client_secret(p), "defaultMode": 0o440},
            }
        )
    container = {
        "name": "check",
        "image": repo.pipeline_image,
        "command": ["sonic"],
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": container_resources(CHECK_JOB),
        "securityContext": container_security(read_only_root=True),
        "volumeMounts": mounts,
    }
    m = meta(p, "check", names.check_name(p))
    m["annotations"] = {
        HOOK: "PostSync",
        HOOK_DELETE_POLICY: "BeforeHookCreation",
        # Scanner findings accepted on this Job only (pipelines/render/scanner.py).
        **skip_annotations(*uid_checks(repo.pipeline_user), *image_checks(repo.pipeline_image)),
    }
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


def application_parameters(p: Placement) -> dict[str, str]:
    """What the site's ApplicationSet reads from a deployment directory to generate its Application."""
    return {
        "name": names.application_name(p),
        "project": p.experiment,
        "experiment": p.experiment,
        "deployment": p.name,
        "namespace": p.namespace,
        "site": p.site,
    }


def application_file(p: Placement) -> str:
    """``application.json`` of the deployment directory (canonical JSON, a final newline)."""
    return json.dumps(application_parameters(p), indent=2, sort_keys=True) + "\n"


def _argocd_labels(site: Site) -> dict[str, str]:
    return names.managed_labels(site=site.name)


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
            "labels": names.managed_labels(experiment=exp.name),
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


# Where the ApplicationSet finds the experiment and the deployment of a directory: in the path
# of its application.json, gitops/rendered/<site>/<experiment>/<deployment>, never in the file's
# contents. Argo CD's git files generator sets .path.segments (the directory split at "/") and
# .path.basename after copying the file's keys, so a "path" key in the file cannot replace them
# (argo-cd applicationset/generators/git.go, generateParamsFromGitFile).
EXPERIMENT_SEGMENT = len(names.RENDERED_DIR.split("/")) + 1  # gitops, rendered, <site>, <experiment>
EXPERIMENT_FROM_PATH = f"{{{{index .path.segments {EXPERIMENT_SEGMENT}}}}}"
DEPLOYMENT_FROM_PATH = "{{.path.basename}}"


def application_name_template(site: Site) -> str:
    """The Go template of the Application name: :func:`names.application_name`, from the path."""
    return f"{site.name}-{EXPERIMENT_FROM_PATH}-{DEPLOYMENT_FROM_PATH}"


def application_files_glob(site: Site) -> str:
    """Where the site's ApplicationSet looks for deployments: one ``application.json`` per directory."""
    return f"{names.RENDERED_DIR}/{site.name}/*/*/{APPLICATION_FILE}"


def application_set(site: Site, repo: Repository) -> dict[str, Any]:
    """The site's ApplicationSet: one Application per deployment directory on the GitOps branch.

    The git files generator reads ``application.json`` of every deployment directory of the
    site on ``repo.branch``, so the set of Applications follows the branch: a directory the
    rollout publishes creates its Application, a directory it removes deletes it. Nothing in
    ``gitops/argocd/`` changes when deployments come and go, so it is applied once.

    The Application's name, its AppProject and its labels come from the directory's path, not
    from the file: a tampered ``application.json`` cannot put its Application into another
    experiment's project or take another Application's name. Only the destination namespace
    is read from the file (the path does not hold it); the experiment's AppProject admits only
    that experiment's namespaces at this site's server, so a tampered one cannot leave them.
    """
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
            # A file without one of the keys the template uses fails the generation instead of
            # producing an Application with an empty name or namespace.
            "goTemplateOptions": ["missingkey=error"],
            "generators": [
                {
                    "git": {
                        "repoURL": repo.url,
                        "revision": repo.branch,
                        "files": [{"path": application_files_glob(site)}],
                    }
                }
            ],
            # Applications follow the branch: created, updated, and deleted with their directory
            # (effective as written only while the controller's --policy is "sync", its default).
            # Their objects go with them (resources finalizer below); preserving them would leave
            # the GPU pods of a removed deployment running, unmanaged.
            "syncPolicy": {"applicationsSync": "sync", "preserveResourcesOnDeletion": False},
            "template": {
                "metadata": {
                    "name": application_name_template(site),
                    "labels": {
                        **_argocd_labels(site),
                        names.EXPERIMENT_LABEL: EXPERIMENT_FROM_PATH,
                        names.DEPLOYMENT_LABEL: DEPLOYMENT_FROM_PATH,
                    },
                    # Deleting an Application (its directory left the branch) deletes its objects.
                    "finalizers": [RESOURCES_FINALIZER],
                },
                "spec": {
                    "project": EXPERIMENT_FROM_PATH,
                    # The directory holding the application.json: the file cannot point elsewhere.
                    "source": {"repoURL": repo.url, "targetRevision": repo.branch, "path": "{{.path.path}}"},
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
    placements: list[Placement],
    repo: Repository,
) -> list[dict[str, Any]]:
    """Everything a site admin applies once: the AppProjects of the admitted experiments and the ApplicationSet.

    ``placements`` (the site's deployments) no longer shape these objects: the ApplicationSet
    finds deployments on the GitOps branch. The parameter stays for the callers' sake.
    """
    projects = [
        app_project(experiments[e], site, sites, repo) for e in sorted(site.experiments) if e in experiments
    ]
    return [*projects, application_set(site, repo)]
