"""Envoy in front of Triton: Deployment, ConfigMap, client and stats Services, Ingress, PDB.

The bootstrap itself comes from :mod:`pipelines.render.envoy.bootstrap` (data, never a template); this
module only runs it:

- the container runs the image's own Envoy with our arguments and installs nothing at start
  (SuperSONIC ran ``apt-get install`` at every start and ignored its ``args``);
- the client Service (of the declared type, with the declared labels and annotations, and an
  optional ClusterIP alias under another name) carries only the gRPC port, the stats Service
  only the stats listener; the admin port is bound to 127.0.0.1 in the pod and appears in no
  Service and no ``containerPort`` (SuperSONIC exposed it through the client Service);
- a checksum of ``envoy.yaml`` in the pod template rolls the pods when the config changes;
- the Prometheus bearer token (admission gate) is mounted from the site's Secret, never inlined;
- the Ingress terminates TLS whenever the site or deployment provides a certificate, and must
  when JWT is on (a bearer token in clear text is a stolen token); where the site's controller
  never publishes ``status.loadBalancer``, it carries :data:`names.INGRESS_STATUS_ANNOTATION`
  so the Argo CD health override in docs/gitops.md does not wait for an address forever.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipelines.config import names
from pipelines.config.footprint import ENVOY_SURGE
from pipelines.config.model import Ingress as SiteIngress
from pipelines.config.model import Placement, Site
from pipelines.modelrepo.lock import Lock
from pipelines.render.envoy.bootstrap import envoy_config, envoy_yaml
from pipelines.render.errors import Unvalidated, require
from pipelines.render.objects import (
    affinity,
    meta,
    prometheus_token_volume,
    resources,
    spread,
    tolerations,
    whole_cpus,
)
from pipelines.render.scanner import image_checks, skip_annotations, uid_checks
from pipelines.render.security import container_security, pod_security

# The distroless Envoy images run as the "nonroot" user of their base image.
ENVOY_UID = 65532
TMP_SIZE = "64Mi"


# Without a CPU limit and without envoy.workers (the schema always sets a request, so rare).
DEFAULT_WORKERS = 2
MAX_WORKERS = 64  # deployment.schema.json envoyCore.workers maximum


def envoy_workers(p: Placement) -> int:
    """Envoy's worker threads: ``envoy.workers``, else the CPU limit rounded up.

    Envoy's own default is one worker per hardware thread of the node, not of the container's
    CPU limit (envoyproxy/envoy#36988): 64 or more on a GPU node, each holding its own HTTP/2
    connections to every Triton pod, and LEAST_REQUEST choosing from each worker's own share of
    the requests, all throttled by a limit of a core or two.
    """
    derived = whole_cpus(p.envoy.resources)
    # Derived from a large CPU limit, never more than the schema lets envoy.workers say.
    return p.envoy.workers or (min(derived, MAX_WORKERS) if derived else DEFAULT_WORKERS)


def envoy_config_text(p: Placement, site: Site) -> str:
    """The envoy.yaml the ConfigMap carries.

    What the generator refuses (a gate without Prometheus, keys over http) the semantic rules and
    the schemas refuse first, with located messages: here it is an internal error.
    """
    try:
        return envoy_yaml(envoy_config(p, site))
    except ValueError as exc:
        raise Unvalidated(
            f"{p.ref}: envoy: {exc} (refused by semantic.prometheus_consistency, schemas)"
        ) from exc


def _probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/ready", "port": "stats"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def render_envoy(p: Placement, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
    """Envoy's ConfigMap, Deployment, Services, optional Ingress and PodDisruptionBudget."""
    r = p.envoy.resources
    require(
        bool(r.cpu and r.memory),
        "semantic.resources_complete",
        f"{p.ref}: envoy.resources needs both cpu and memory",
    )
    text = envoy_config_text(p, site)
    checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
    name = names.envoy_name(p)

    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": names.ENVOY_CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "configMap": {
                "name": name,
                "items": [{"key": names.ENVOY_CONFIG_FILE, "path": names.ENVOY_CONFIG_FILE}],
            },
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
    ]
    token = prometheus_token_volume(p, site)
    if token is not None:
        mounts.append(token[0])
        volumes.append(token[1])

    container: dict[str, Any] = {
        "name": "envoy",
        "image": p.envoy.image,
        # The image's entrypoint is Envoy itself; nothing else runs and nothing is installed.
        "args": [
            "-c",
            f"{names.ENVOY_CONFIG_DIR}/{names.ENVOY_CONFIG_FILE}",
            "--service-cluster",
            name,
            "--service-node",
            "$(POD_NAME)",
            "--disable-hot-restart",
            "--concurrency",
            str(envoy_workers(p)),
            "--log-level",
            "info",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            # The RepositoryIndex route adds Triton's management key from here (never rendered).
            names.triton_admin_env(),
        ],
        "ports": [
            {"name": "grpc", "containerPort": names.ENVOY_GRPC, "protocol": "TCP"},
            {"name": "stats", "containerPort": names.ENVOY_STATS, "protocol": "TCP"},
        ],
        "resources": resources(r),
        "readinessProbe": _probe(5, 2),
        "livenessProbe": _probe(10, 3),
        "securityContext": container_security(read_only_root=True),
        "volumeMounts": mounts,
    }
    # Scanner findings accepted on this Deployment only (pipelines/render/scanner.py).
    accepted = skip_annotations("CKV_K8S_35", *uid_checks(ENVOY_UID), *image_checks(p.envoy.image))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(p, "envoy", name, **accepted),
        "spec": {
            "replicas": p.envoy.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": names.selector(p, "envoy")},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": ENVOY_SURGE, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": names.labels(p, "envoy"),
                    # The deployment's own annotations never replace the renderer's (semantic rules refuse them).
                    "annotations": {**p.envoy.pod_annotations, names.CONFIG_CHECKSUM_ANNOTATION: checksum},
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security(ENVOY_UID, secrets=token is not None),
                    "containers": [container],
                    "topologySpreadConstraints": spread(p, "envoy"),
                    "volumes": volumes,
                    **_placement(p),
                },
            },
        },
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(p, "envoy", name),
        "data": {names.ENVOY_CONFIG_FILE: text},
    }
    client_service = _client_service(p, name, p.envoy.service.type)
    stats_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _service_meta(p, names.envoy_stats_name(p), "stats"),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector(p, "envoy"),
            "ports": [{"name": "stats", "port": names.ENVOY_STATS, "targetPort": "stats", "protocol": "TCP"}],
        },
    }
    objs = [config_map, deployment, client_service, stats_service]
    if p.envoy.service.alias:
        objs.append(_client_service(p, p.envoy.service.alias, "ClusterIP"))
    ingress = _ingress(p, site)
    if ingress is not None:
        objs.append(ingress)
    if p.envoy.replicas > 1:
        objs.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": meta(p, "envoy", name),
                "spec": {"minAvailable": 1, "selector": {"matchLabels": names.selector(p, "envoy")}},
            }
        )
    return objs


def _service_meta(p: Placement, name: str, role: str) -> dict[str, Any]:
    m = meta(p, "envoy", name)
    m["labels"][names.ROLE_LABEL] = role
    return m


def _placement(p: Placement) -> dict[str, Any]:
    """The Envoy pods' nodeSelector, affinity and tolerations, as the deployment declares them."""
    e = p.envoy
    out: dict[str, Any] = {}
    if e.node_selector:
        out["nodeSelector"] = dict(e.node_selector)
    placed = affinity(e.affinity)
    if placed:
        out["affinity"] = placed
    tolerated = tolerations(e.tolerations)
    if tolerated:
        out["tolerations"] = tolerated
    return out


def _client_service(p: Placement, name: str, service_type: str) -> dict[str, Any]:
    """A client-facing Service (the Envoy Service or its alias): the gRPC port only, never the admin port.

    The deployment's labels and annotations go on both (e.g. MetalLB's address pool); the
    renderer's labels win, and the semantic rules refuse deployment keys in their prefixes.
    """
    s = p.envoy.service
    m = _service_meta(p, name, "client")
    m["labels"] = {**s.labels, **m["labels"]}
    if s.annotations:
        m["annotations"] = dict(s.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": m,
        "spec": {
            "type": service_type,
            "selector": names.selector(p, "envoy"),
            "ports": [
                {
                    "name": "grpc",
                    "port": names.ENVOY_GRPC,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                }
            ],
        },
    }


def _ingress_tls(p: Placement, ingress: SiteIngress) -> dict[str, Any] | None:
    """The Ingress's ``tls`` entry, first of: the deployment's Secret, the deployment's ``tls: default``
    (the controller's default certificate), the site's Secret, the site's default certificate.

    ``secretName`` is optional in networking.k8s.io/v1 IngressTLS. Without it the controller
    terminates TLS with its default certificate (ingress-nginx docs/user-guide/tls.md: "The
    default certificate will also be used for ingress tls: sections that do not have a
    secretName option"; haproxy-ingress ``--default-ssl-certificate`` likewise), and a host
    listed under ``tls`` is redirected from HTTP to HTTPS (ingress-nginx: 308 "if TLS is enabled
    for that ingress"; haproxy-ingress: ``ssl-redirect`` defaults to true). That is how
    SuperSONIC's Nautilus and Geddes values files expose their hosts.
    """
    ing = p.envoy.ingress
    assert ing is not None
    if ing.tls_secret:
        return {"hosts": [ing.host], "secretName": ing.tls_secret}
    if ing.tls == "default":
        return {"hosts": [ing.host]}
    if ingress.tls_secret:
        return {"hosts": [ing.host], "secretName": ingress.tls_secret}
    if ingress.default_certificate:
        return {"hosts": [ing.host]}
    return None


def _ingress(p: Placement, site: Site) -> dict[str, Any] | None:
    ing = p.envoy.ingress
    if ing is None:
        return None
    require(
        site.ingress is not None,
        "semantic.ingress_hosts",
        f"{p.ref}: envoy.ingress: site {site.name!r} offers no ingress",
    )
    assert site.ingress is not None
    m = meta(p, "envoy", names.envoy_name(p))
    annotations = dict(site.ingress.annotations)
    if not site.ingress.publishes_status:
        annotations[names.INGRESS_STATUS_ANNOTATION] = names.INGRESS_STATUS_UNPUBLISHED
    # The deployment's own keys (validated against the site's allowedAnnotations) never replace
    # the site's or ours: a key both set keeps the site's value.
    for key, value in sorted(ing.annotations.items()):
        annotations.setdefault(key, value)
    if annotations:
        m["annotations"] = annotations
    spec: dict[str, Any] = {
        "ingressClassName": ing.class_name or site.ingress.class_name,
        "rules": [
            {
                "host": ing.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": names.envoy_name(p), "port": {"name": "grpc"}}},
                        }
                    ]
                },
            }
        ],
    }
    tls = _ingress_tls(p, site.ingress)
    if tls is not None:
        spec["tls"] = [tls]
    else:
        require(
            p.envoy.auth is None or p.envoy.auth.jwt is None,
            "semantic.jwt_needs_tls",
            f"{p.ref}: envoy.ingress: a JWT-protected Ingress without TLS",
        )
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": m, "spec": spec}
