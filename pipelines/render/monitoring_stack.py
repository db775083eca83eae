"""The optional in-namespace monitoring stack, for sites without one (``monitoring.prometheus``,
``monitoring.grafana``, ``monitoring.tracing``): what SuperSONIC installs from its chart, with
what it gets wrong fixed (notes/SUPERSONIC.md, defect 8).

- **Prometheus** scrapes this deployment only: Kubernetes endpoint discovery in its own
  namespace (a namespaced Role: get/list/watch pods, endpoints and services, no ClusterRole),
  kept to this deployment's Services by their ``app.kubernetes.io/instance`` label and names
  (the jobs of :func:`monitoring.prometheus_scrape_config`), and evaluates the deployment's
  recording and alert rules. KEDA, the admission gate and the checks then ask it
  (:func:`names.prometheus_url`). There is no Alertmanager: alerts show in Prometheus and Grafana.
- **Grafana** with the Prometheus (and Tempo) datasources and the deployment's dashboard, no
  anonymous access, the admin login from a Secret the site admins create (only referenced), an
  optional Ingress on ``monitoring.grafana.host`` (TLS required: the login crosses it).
- **OpenTelemetry collector + Tempo**: Envoy (and Triton in OpenTelemetry mode) send traces to
  the collector, which forwards them to Tempo; Grafana reads Tempo.
- A NetworkPolicy per component admits only what is needed: Prometheus → Triton/Envoy metrics
  (in :mod:`.security`), Envoy/Grafana/the check Job/KEDA → Prometheus, Envoy/Triton → collector,
  collector/Grafana → Tempo.

Every pod passes Pod Security ``restricted``; storage is ``emptyDir`` with a ``sizeLimit`` (the
stack holds hours to days of one deployment's data; a lost pod loses history, not service).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pipelines.config import footprint, names
from pipelines.config.model import Placement, Site
from pipelines.modelrepo.lock import Lock
from pipelines.render.durations import go_duration
from pipelines.render.monitoring import RULES_KEY, prometheus_rule_groups, prometheus_scrape_config
from pipelines.render.objects import meta
from pipelines.render.objects import resources as container_resources
from pipelines.render.scanner import image_checks, skip_annotations, uid_checks
from pipelines.render.security import container_security, namespace_peer, pod_security
from pipelines.render.yamlout import dump

PROMETHEUS_CONFIG_KEY = "prometheus.yml"
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_DATA_DIR = "/prometheus"
PROMETHEUS_UID = 65534  # "nobody", the image's user
PROMETHEUS_RETENTION = "15d"  # as SuperSONIC's chart
PROMETHEUS_RETENTION_SIZE = "3GB"  # below the volume's limit: Prometheus deletes old blocks first
PROMETHEUS_VOLUME = "4Gi"

GRAFANA_UID = 472  # the image's user
GRAFANA_ADMIN_DIR = "/etc/grafana/credentials"  # the admin Secret's keys, one file each
GRAFANA_DATASOURCES_KEY = "datasources.yaml"
GRAFANA_DASHBOARDS_KEY = "dashboards.yaml"
GRAFANA_DASHBOARD_DIR = "/etc/grafana/dashboards"

OTEL_UID = 10001  # the image's user
OTEL_CONFIG_KEY = "config.yaml"
OTEL_CONFIG_DIR = "/etc/otelcol"

TEMPO_UID = 10001  # the image's user
TEMPO_CONFIG_KEY = "tempo.yaml"
TEMPO_CONFIG_DIR = "/etc/tempo"
TEMPO_DATA_DIR = "/var/tempo"
TEMPO_RETENTION = "48h"
TEMPO_VOLUME = "4Gi"

TMP_SIZE = "64Mi"


def enabled(p: Placement) -> bool:
    """Whether ``p`` runs any part of the stack."""
    m = p.monitoring
    return m.prometheus.enabled or m.grafana.enabled or m.tracing.enabled


# --- shared builders -------------------------------------------------------------------------------


def _checksum(*texts: str) -> str:
    return hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()


def _http_probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _deployment(
    p: Placement,
    component: str,
    name: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    uid: int,
    checksum: str,
    api_token: bool = False,
    secrets: bool = False,
) -> list[dict[str, Any]]:
    """Its ServiceAccount and a Deployment of one replica; ``Recreate``, because each pod's
    emptyDir is its own store anyway. A writable /tmp; everything else read-only."""
    container["securityContext"] = container_security(read_only_root=True)
    container["volumeMounts"] = [*container["volumeMounts"], {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}]
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(p, component, name),
        # Pods opt in below; only Prometheus does.
        "automountServiceAccountToken": False,
    }
    # Scanner findings accepted on this Deployment only (pipelines/render/scanner.py): images by
    # tag, the images' own users, and Prometheus's API token (it discovers its targets).
    accepted = skip_annotations(
        *image_checks(container["image"]), *uid_checks(uid), *(["CKV_K8S_38"] if api_token else [])
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(p, component, name, **accepted),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": names.selector(p, component)},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": names.labels(p, component),
                    "annotations": {names.CONFIG_CHECKSUM_ANNOTATION: checksum},
                },
                "spec": {
                    "serviceAccountName": name,
                    # Only Prometheus talks to the Kubernetes API (endpoint discovery).
                    "automountServiceAccountToken": api_token,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(uid, secrets=secrets),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    return [account, deployment]


def _service(p: Placement, component: str, name: str, ports: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(p, component, name),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector(p, component),
            "ports": [{"name": n, "port": port, "targetPort": n, "protocol": "TCP"} for n, port in ports],
        },
    }


def _config_map(p: Placement, component: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(p, component, name), "data": data}


def _policy(p: Placement, component: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Ingress NetworkPolicy; an empty ``rules`` list admits nothing."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(p, component, name),
        "spec": {
            "podSelector": {"matchLabels": names.selector(p, component)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def _from_pods(p: Placement, components: list[str], port: int) -> list[dict[str, Any]]:
    if not components:
        return []
    peers = [{"podSelector": {"matchLabels": names.selector(p, c)}} for c in components]
    return [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}]


def _service_url(p: Placement, name: str, port: int) -> str:
    return f"http://{name}.{p.namespace}.svc.cluster.local:{port}"


# --- Prometheus ------------------------------------------------------------------------------------


def _meta_label(label: str) -> str:
    """Prometheus' discovery meta label for a Service label (every invalid character becomes ``_``)."""
    return "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def prometheus_config(p: Placement) -> dict[str, Any]:
    """``prometheus.yml`` of the in-namespace Prometheus: this deployment's targets, its rules."""
    interval = go_duration(p.monitoring.scrape_interval)
    jobs = prometheus_scrape_config(p)
    instance = next(k for k in names.selector(p, "triton") if k.endswith("/instance"))
    for job in jobs:
        # Namespace-only discovery already; keep only this deployment's Services on top.
        job["relabel_configs"].insert(
            0, {"source_labels": [_meta_label(instance)], "regex": p.name, "action": "keep"}
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [f"{PROMETHEUS_CONFIG_DIR}/{RULES_KEY}"],
        "scrape_configs": jobs,
    }


def prometheus_rules(p: Placement) -> dict[str, Any]:
    """The rules file: the same groups the site's Prometheus would get (:mod:`.monitoring`)."""
    return {"groups": prometheus_rule_groups(p)}


def _prometheus(p: Placement, site: Site) -> list[dict[str, Any]]:
    name = names.prometheus_name(p)
    config_text = dump(prometheus_config(p))
    rules_text = dump(prometheus_rules(p))
    container = {
        "name": "prometheus",
        "image": names.PROMETHEUS_IMAGE,
        # No --web.enable-lifecycle or --web.enable-admin-api: nobody can stop it or delete series.
        "args": [
            f"--config.file={PROMETHEUS_CONFIG_DIR}/{PROMETHEUS_CONFIG_KEY}",
            f"--storage.tsdb.path={PROMETHEUS_DATA_DIR}",
            f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION}",
            f"--storage.tsdb.retention.size={PROMETHEUS_RETENTION_SIZE}",
            f"--web.listen-address=:{names.PROMETHEUS_PORT}",
        ],
        "ports": [{"name": "http", "containerPort": names.PROMETHEUS_PORT, "protocol": "TCP"}],
        "resources": container_resources(footprint.STACK_PROMETHEUS),
        "readinessProbe": _http_probe("/-/ready", "http", 5, 3),
        "livenessProbe": _http_probe("/-/healthy", "http", 15, 4),
        "volumeMounts": [
            {"name": "config", "mountPath": PROMETHEUS_CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": PROMETHEUS_DATA_DIR},
        ],
    }
    volumes = [
        {"name": "config", "configMap": {"name": name, "defaultMode": 0o444}},
        {"name": "data", "emptyDir": {"sizeLimit": PROMETHEUS_VOLUME}},
    ]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta(p, "prometheus", name),
        # Endpoint discovery reads these three, in this namespace only (no ClusterRole anywhere).
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "pods", "services"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta(p, "prometheus", name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": p.namespace}],
    }
    clients = [
        c
        for c, on in (("envoy", _gate_enabled(p)), ("grafana", p.monitoring.grafana.enabled), ("check", True))
        if on
    ]
    rules = _from_pods(p, clients, names.PROMETHEUS_PORT)
    if p.autoscaling is not None:
        # KEDA's operator evaluates the ScaledObject's triggers from its own namespace.
        rules.append(
            {
                "from": [namespace_peer(site.keda.namespace)],
                "ports": [{"protocol": "TCP", "port": names.PROMETHEUS_PORT}],
            }
        )
    return [
        role,
        binding,
        _config_map(p, "prometheus", name, {PROMETHEUS_CONFIG_KEY: config_text, RULES_KEY: rules_text}),
        *_deployment(
            p,
            "prometheus",
            name,
            container,
            volumes,
            uid=PROMETHEUS_UID,
            checksum=_checksum(config_text, rules_text),
            api_token=True,
        ),
        _service(p, "prometheus", name, [("http", names.PROMETHEUS_PORT)]),
        _policy(p, "prometheus", name, rules),
    ]


def _gate_enabled(p: Placement) -> bool:
    gate = p.envoy.admission_gate
    return gate is not None and gate.enabled


# --- Grafana ---------------------------------------------------------------------------------------


def grafana_datasources(p: Placement) -> dict[str, Any]:
    """Grafana's provisioned datasources: the in-namespace Prometheus (default) and Tempo."""
    sources: list[dict[str, Any]] = [
        {
            "name": "Prometheus",
            "uid": "prometheus",
            "type": "prometheus",
            "access": "proxy",
            "url": _service_url(p, names.prometheus_name(p), names.PROMETHEUS_PORT),
            "isDefault": True,
            "editable": False,
            "jsonData": {"timeInterval": go_duration(p.monitoring.scrape_interval)},
        }
    ]
    if p.monitoring.tracing.enabled:
        sources.append(
            {
                "name": "Tempo",
                "uid": "tempo",
                "type": "tempo",
                "access": "proxy",
                "url": _service_url(p, names.tempo_name(p), names.TEMPO_HTTP),
                "editable": False,
            }
        )
    return {"apiVersion": 1, "datasources": sources}


def grafana_dashboard_provider() -> dict[str, Any]:
    """Grafana loads the dashboard ConfigMap's JSON from a read-only directory; no UI edits."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "sonic",
                "orgId": 1,
                "folder": "SONIC",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": GRAFANA_DASHBOARD_DIR},
            }
        ],
    }


def _grafana_env(p: Placement) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        # The admin login: the site admins' Secret mounted as files, never a value (no admin/admin)
        # and never an environment variable. Grafana reads any GF_<SECTION>_<KEY>__FILE variable as
        # the path of a file holding the value (Grafana docs, "Configure Grafana": "Variable
        # expansion", __FILE suffix).
        {
            "name": "GF_SECURITY_ADMIN_USER__FILE",
            "value": f"{GRAFANA_ADMIN_DIR}/{names.GRAFANA_ADMIN_USER_KEY}",
        },
        {
            "name": "GF_SECURITY_ADMIN_PASSWORD__FILE",
            "value": f"{GRAFANA_ADMIN_DIR}/{names.GRAFANA_ADMIN_PASSWORD_KEY}",
        },
        {"name": "GF_AUTH_ANONYMOUS_ENABLED", "value": "false"},
        {"name": "GF_USERS_ALLOW_SIGN_UP", "value": "false"},
        {"name": "GF_SECURITY_DISABLE_GRAVATAR", "value": "true"},
        {"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"},
        {"name": "GF_ANALYTICS_CHECK_FOR_UPDATES", "value": "false"},
        {"name": "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "value": "false"},
        {"name": "GF_PATHS_DATA", "value": "/var/lib/grafana"},
        {"name": "GF_PATHS_PROVISIONING", "value": "/etc/grafana/provisioning"},
        {"name": "GF_LOG_MODE", "value": "console"},
    ]
    host = p.monitoring.grafana.host
    if host is not None:
        env += [
            {"name": "GF_SERVER_ROOT_URL", "value": f"https://{host}/"},
            {"name": "GF_SECURITY_COOKIE_SECURE", "value": "true"},
        ]
    return env


def _grafana_ingress(p: Placement, site: Site) -> dict[str, Any] | None:
    host = p.monitoring.grafana.host
    if host is None or site.ingress is None:
        return None  # no host, or no ingress at the site (semantic.ingress_hosts reports it)
    m = meta(p, "grafana", names.grafana_name(p))
    # Not the site's annotations: they are written for Envoy's gRPC Ingress (backend protocol).
    if not site.ingress.publishes_status:
        m["annotations"] = {names.INGRESS_STATUS_ANNOTATION: names.INGRESS_STATUS_UNPUBLISHED}
    tls: dict[str, Any] = {"hosts": [host]}
    if site.ingress.tls_secret:
        tls["secretName"] = site.ingress.tls_secret
    backend = {"service": {"name": names.grafana_name(p), "port": {"name": "http"}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": m,
        "spec": {
            "ingressClassName": site.ingress.class_name,
            "rules": [
                {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            ],
            # TLS always: semantic.grafana_host_tls refuses a site with neither Secret nor default certificate.
            "tls": [tls],
        },
    }


def _grafana(p: Placement, site: Site) -> list[dict[str, Any]]:
    name = names.grafana_name(p)
    datasources = dump(grafana_datasources(p))
    provider = dump(grafana_dashboard_provider())
    mounts: list[dict[str, Any]] = [
        {"name": "datasources", "mountPath": "/etc/grafana/provisioning/datasources", "readOnly": True},
        {"name": "dashboard-provider", "mountPath": "/etc/grafana/provisioning/dashboards", "readOnly": True},
        {"name": "data", "mountPath": "/var/lib/grafana"},
        {"name": "admin", "mountPath": GRAFANA_ADMIN_DIR, "readOnly": True},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "datasources",
            "configMap": {
                "name": name,
                "items": [{"key": GRAFANA_DATASOURCES_KEY, "path": GRAFANA_DATASOURCES_KEY}],
            },
        },
        {
            "name": "dashboard-provider",
            "configMap": {
                "name": name,
                "items": [{"key": GRAFANA_DASHBOARDS_KEY, "path": GRAFANA_DASHBOARDS_KEY}],
            },
        },
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
        # Readable by the pod's group only (fsGroup: pod_security(secrets=True)).
        {"name": "admin", "secret": {"secretName": names.GRAFANA_ADMIN_SECRET, "defaultMode": 0o440}},
    ]
    if p.monitoring.dashboard:
        # The ConfigMap of dashboard.py (also labelled for a site Grafana's sidecar).
        mounts.append({"name": "dashboards", "mountPath": GRAFANA_DASHBOARD_DIR, "readOnly": True})
        volumes.append({"name": "dashboards", "configMap": {"name": names.dashboard_name(p)}})
    container = {
        "name": "grafana",
        "image": names.GRAFANA_IMAGE,
        "env": _grafana_env(p),
        "ports": [{"name": "http", "containerPort": names.GRAFANA_PORT, "protocol": "TCP"}],
        "resources": container_resources(footprint.STACK_GRAFANA),
        "readinessProbe": _http_probe("/api/health", "http", 10, 3),
        "livenessProbe": _http_probe("/api/health", "http", 20, 5),
        "volumeMounts": mounts,
    }
    # Reachable through its Ingress when it has a host (a host-network controller matches no
    # namespace selector, as for Envoy's client port); otherwise only by port-forward.
    rules = (
        [{"ports": [{"protocol": "TCP", "port": names.GRAFANA_PORT}]}] if p.monitoring.grafana.host else []
    )
    objs = [
        _config_map(
            p, "grafana", name, {GRAFANA_DATASOURCES_KEY: datasources, GRAFANA_DASHBOARDS_KEY: provider}
        ),
        *_deployment(
            p,
            "grafana",
            name,
            container,
            volumes,
            uid=GRAFANA_UID,
            checksum=_checksum(datasources, provider),
            secrets=True,
        ),
        _service(p, "grafana", name, [("http", names.GRAFANA_PORT)]),
        _policy(p, "grafana", name, rules),
    ]
    ingress = _grafana_ingress(p, site)
    if ingress is not None:
        objs.append(ingress)
    return objs


# --- OpenTelemetry collector and Tempo -------------------------------------------------------------


def otel_collector_config(p: Placement) -> dict[str, Any]:
    """The collector: OTLP in (gRPC from Envoy, HTTP from Triton), batched, OTLP out to Tempo."""
    tempo = f"{names.tempo_name(p)}.{p.namespace}.svc.cluster.local:{names.OTLP_GRPC}"
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{names.OTLP_GRPC}"},
                    "http": {"endpoint": f"0.0.0.0:{names.OTLP_HTTP}"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            "batch": {},
        },
        # Plain gRPC inside the namespace; the NetworkPolicy admits only this collector to Tempo.
        "exporters": {"otlp": {"endpoint": tempo, "tls": {"insecure": True}}},
        "extensions": {"health_check": {"endpoint": f"0.0.0.0:{names.OTEL_HEALTH}"}},
        "service": {
            "extensions": ["health_check"],
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["otlp"],
                }
            },
        },
    }


def tempo_config() -> dict[str, Any]:
    """Tempo as one process with local block storage in its emptyDir; no usage reporting."""
    return {
        "server": {"http_listen_port": names.TEMPO_HTTP, "log_level": "info"},
        "distributor": {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{names.OTLP_GRPC}"}}}}
        },
        "compactor": {"compaction": {"block_retention": TEMPO_RETENTION}},
        "storage": {
            "trace": {
                "backend": "local",
                "wal": {"path": f"{TEMPO_DATA_DIR}/wal"},
                "local": {"path": f"{TEMPO_DATA_DIR}/blocks"},
            }
        },
        "usage_report": {"reporting_enabled": False},
    }


def _triton_traces_otel(p: Placement) -> bool:
    t = p.triton.server.tracing
    return t is not None and t.mode == "opentelemetry"


def _tracing(p: Placement) -> list[dict[str, Any]]:
    collector = names.otel_collector_name(p)
    collector_text = dump(otel_collector_config(p))
    collector_container = {
        "name": "otel-collector",
        "image": names.OTEL_COLLECTOR_IMAGE,
        "args": [f"--config={OTEL_CONFIG_DIR}/{OTEL_CONFIG_KEY}"],
        "ports": [
            {"name": "otlp-grpc", "containerPort": names.OTLP_GRPC, "protocol": "TCP"},
            {"name": "otlp-http", "containerPort": names.OTLP_HTTP, "protocol": "TCP"},
            {"name": "health", "containerPort": names.OTEL_HEALTH, "protocol": "TCP"},
        ],
        "env": [{"name": "GOMEMLIMIT", "value": "400MiB"}],  # below the memory limit
        "resources": container_resources(footprint.STACK_OTEL_COLLECTOR),
        "readinessProbe": _http_probe("/", "health", 5, 3),
        "livenessProbe": _http_probe("/", "health", 15, 4),
        "volumeMounts": [{"name": "config", "mountPath": OTEL_CONFIG_DIR, "readOnly": True}],
    }
    collector_rules = _from_pods(p, ["envoy"], names.OTLP_GRPC)
    if _triton_traces_otel(p):
        collector_rules += _from_pods(p, ["triton"], names.OTLP_HTTP)

    tempo = names.tempo_name(p)
    tempo_text = dump(tempo_config())
    tempo_container = {
        "name": "tempo",
        "image": names.TEMPO_IMAGE,
        "args": [f"-config.file={TEMPO_CONFIG_DIR}/{TEMPO_CONFIG_KEY}"],
        "ports": [
            {"name": "http", "containerPort": names.TEMPO_HTTP, "protocol": "TCP"},
            {"name": "otlp-grpc", "containerPort": names.OTLP_GRPC, "protocol": "TCP"},
        ],
        "resources": container_resources(footprint.STACK_TEMPO),
        "readinessProbe": _http_probe("/ready", "http", 10, 3),
        "livenessProbe": _http_probe("/ready", "http", 20, 5),
        "volumeMounts": [
            {"name": "config", "mountPath": TEMPO_CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": TEMPO_DATA_DIR},
        ],
    }
    tempo_rules = _from_pods(p, ["otel-collector"], names.OTLP_GRPC)
    if p.monitoring.grafana.enabled:
        tempo_rules += _from_pods(p, ["grafana"], names.TEMPO_HTTP)
    return [
        _config_map(p, "otel-collector", collector, {OTEL_CONFIG_KEY: collector_text}),
        *_deployment(
            p,
            "otel-collector",
            collector,
            collector_container,
            [{"name": "config", "configMap": {"name": collector, "defaultMode": 0o444}}],
            uid=OTEL_UID,
            checksum=_checksum(collector_text),
        ),
        _service(
            p, "otel-collector", collector, [("otlp-grpc", names.OTLP_GRPC), ("otlp-http", names.OTLP_HTTP)]
        ),
        _policy(p, "otel-collector", collector, collector_rules),
        _config_map(p, "tempo", tempo, {TEMPO_CONFIG_KEY: tempo_text}),
        *_deployment(
            p,
            "tempo",
            tempo,
            tempo_container,
            [
                {"name": "config", "configMap": {"name": tempo, "defaultMode": 0o444}},
                {"name": "data", "emptyDir": {"sizeLimit": TEMPO_VOLUME}},
            ],
            uid=TEMPO_UID,
            checksum=_checksum(tempo_text),
        ),
        _service(p, "tempo", tempo, [("http", names.TEMPO_HTTP), ("otlp-grpc", names.OTLP_GRPC)]),
        _policy(p, "tempo", tempo, tempo_rules),
    ]


def render_monitoring_stack(p: Placement, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
    """The enabled parts of the in-namespace stack; nothing when none is enabled."""
    objs: list[dict[str, Any]] = []
    m = p.monitoring
    if m.prometheus.enabled:
        objs += _prometheus(p, site)
    if m.grafana.enabled:
        objs += _grafana(p, site)
    if m.tracing.enabled:
        objs += _tracing(p)
    return objs
