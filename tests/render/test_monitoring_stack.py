"""The optional in-namespace monitoring stack (render/monitoring_stack.py), on the example that
uses it (cms/particlenet-anvil at Anvil, a site without a cluster Prometheus) and on variants.

Kubernetes validity of every object (kubernetes-validate --strict) is covered for the whole
tree by test_validation.py, Pod Security and token settings by test_security.py. Here: what
the objects say, the real ``promtool`` on the rendered Prometheus config and rules, and a real
Prometheus started on 127.0.0.1 with the rendered scrape jobs and rules (Kubernetes discovery
cannot run here: the jobs get static targets carrying the labels it would discover).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pipelines.config import names, schema
from pipelines.config.model import Placement, Tracing
from pipelines.local.processes import free_port, start, stop
from pipelines.render import render_site_deployment
from pipelines.render.envoy.bootstrap import envoy_config
from pipelines.render.envoy.tracing import DEFAULT_SAMPLING_RATE
from pipelines.render.monitoring import RULES_KEY
from pipelines.render.monitoring_stack import GRAFANA_UID, PROMETHEUS_CONFIG_KEY, prometheus_config
from pipelines.render.triton import triton_args
from tests.render.support import find, inputs_for, placement, rendered

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)


def _anvil() -> tuple[Placement, list[dict[str, Any]]]:
    p, _ = placement("anvil", "particlenet-anvil")
    return p, rendered(p)


def _variant(site: str, name: str, **monitoring: Any) -> tuple[Placement, list[dict[str, Any]]]:
    """``name`` at ``site`` with the stack settings changed (e.g. prometheus={"enabled": True})."""
    p, s = placement(site, name)
    m = p.monitoring.model_copy(
        update={k: type(getattr(p.monitoring, k))(**v) for k, v in monitoring.items()}
    )
    q = p.model_copy(update={"monitoring": m})
    return q, render_site_deployment(q, s, inputs_for(q))


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- Prometheus -------------------------------------------------------------------------------------


def test_prometheus_rbac_is_namespaced_and_read_only() -> None:
    p, objs = _anvil()
    name = names.prometheus_name(p)
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = find(objs, "Role", name)
    assert role["metadata"]["namespace"] == p.namespace
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["endpoints", "pods", "services"], "verbs": ["get", "list", "watch"]}
    ]
    binding = find(objs, "RoleBinding", name)
    assert binding["metadata"]["namespace"] == p.namespace
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": p.namespace}]
    pod = find(objs, "Deployment", name)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name and pod["automountServiceAccountToken"] is True
    assert find(objs, "ServiceAccount", name)["automountServiceAccountToken"] is False


def test_prometheus_discovers_only_this_deployment_in_its_namespace() -> None:
    p, _ = _anvil()
    cfg = prometheus_config(p)
    assert cfg["rule_files"] == ["/etc/prometheus/rules.yaml"]
    for job in cfg["scrape_configs"]:
        assert job["kubernetes_sd_configs"] == [{"role": "endpoints", "namespaces": {"names": [p.namespace]}}]
        first = job["relabel_configs"][0]
        assert first == {
            "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
            "regex": p.name,
            "action": "keep",
        }


def test_prometheus_pod_storage_probes_and_flags() -> None:
    p, objs = _anvil()
    dep = find(objs, "Deployment", names.prometheus_name(p))
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == names.PROMETHEUS_IMAGE and ":" in c["image"].split("/")[-1]
    assert not [a for a in c["args"] if "enable-lifecycle" in a or "enable-admin-api" in a]
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["emptyDir"]["sizeLimit"]
    assert dep["spec"]["replicas"] == 1


def test_keda_gate_and_checks_ask_the_in_namespace_prometheus() -> None:
    p, s = placement("anvil", "particlenet-anvil")
    url = names.prometheus_url(p, s)
    assert url == f"http://{names.prometheus_name(p)}.{p.namespace}.svc.cluster.local:{names.PROMETHEUS_PORT}"
    assert s.prometheus is None and names.prometheus_auth(p, s) is None
    # The admission gate's Prometheus cluster points at the Service.
    cfg = envoy_config(p, s)
    prom = next(c for c in cfg["static_resources"]["clusters"] if c["name"] == "prometheus")
    addr = prom["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (addr["address"], addr["port_value"]) == (
        f"{names.prometheus_name(p)}.{p.namespace}.svc.cluster.local",
        names.PROMETHEUS_PORT,
    )
    job = find(rendered(p), "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--prometheus") + 1] == url and "--prometheus-token-file" not in args
    # KEDA, on a deployment that autoscales at a site whose Prometheus needs a token: the
    # in-namespace one replaces both the URL and the token.
    q, objs = _variant("geddes", "particlenet", prometheus={"enabled": True})
    so = find(objs, "ScaledObject")
    for trigger in so["spec"]["triggers"]:
        assert trigger["metadata"]["serverAddress"] == names.prometheus_url(
            q, placement("geddes", "particlenet")[1]
        )
        assert "authenticationRef" not in trigger and "authModes" not in trigger["metadata"]
    assert not [o for o in objs if o["kind"] == "TriggerAuthentication"]


def test_prometheus_admits_only_its_readers() -> None:
    p, objs = _anvil()
    rules = find(objs, "NetworkPolicy", names.prometheus_name(p))["spec"]["ingress"]
    assert rules == [
        {
            "from": [
                {"podSelector": {"matchLabels": names.selector(p, c)}} for c in ("envoy", "grafana", "check")
            ],
            "ports": [{"protocol": "TCP", "port": names.PROMETHEUS_PORT}],
        }
    ]
    # KEDA's namespace only when KEDA scales the deployment.
    q, objs = _variant("geddes", "particlenet", prometheus={"enabled": True})
    rules = find(objs, "NetworkPolicy", names.prometheus_name(q))["spec"]["ingress"]
    assert rules[-1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    ]


def test_triton_and_envoy_metrics_admit_the_in_namespace_prometheus() -> None:
    p, objs = _anvil()
    for name, port in (
        (names.triton_name(p), names.TRITON_METRICS),
        (names.envoy_name(p), names.ENVOY_STATS),
    ):
        rules = find(objs, "NetworkPolicy", name)["spec"]["ingress"]
        metrics = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": port}]]
        assert metrics == [
            {
                "from": [{"podSelector": {"matchLabels": names.selector(p, "prometheus")}}],
                "ports": metrics[0]["ports"],
            }
        ]


@needs_promtool
def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    p, objs = _anvil()
    cm = find(objs, "ConfigMap", names.prometheus_name(p))
    (tmp_path / RULES_KEY).write_text(cm["data"][RULES_KEY])
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / RULES_KEY)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _local_config(cm: dict[str, Any], tmp_path: Path, targets: list[dict[str, Any]]) -> Path:
    """The rendered prometheus.yml, rules next to it, discovery replaced by ``targets``.

    Each target is a static target carrying the ``__meta_kubernetes_*`` labels that endpoint
    discovery would give it, so the rendered relabelling runs unchanged.
    """
    cfg = yaml.safe_load(cm["data"][PROMETHEUS_CONFIG_KEY])
    (tmp_path / RULES_KEY).write_text(cm["data"][RULES_KEY])
    cfg["rule_files"] = [str(tmp_path / RULES_KEY)]
    for job in cfg["scrape_configs"]:
        del job["kubernetes_sd_configs"]
        job["static_configs"] = targets
    path = tmp_path / PROMETHEUS_CONFIG_KEY
    path.write_text(yaml.safe_dump(cfg))
    return path


def _target(address: str, service: str, port: str, instance: str, pod: str) -> dict[str, Any]:
    return {
        "targets": [address],
        "labels": {
            "__meta_kubernetes_namespace": "cms",
            "__meta_kubernetes_service_name": service,
            "__meta_kubernetes_endpoint_port_name": port,
            "__meta_kubernetes_service_label_app_kubernetes_io_instance": instance,
            "__meta_kubernetes_pod_name": pod,
        },
    }


@needs_promtool
def test_promtool_accepts_the_rendered_config(tmp_path: Path) -> None:
    """``promtool check config``: unchanged where this promtool knows Kubernetes discovery (Debian
    builds it without), else with discovery replaced by static targets."""
    assert PROMTOOL is not None
    p, objs = _anvil()
    cm = find(objs, "ConfigMap", names.prometheus_name(p))
    as_rendered = tmp_path / "rendered"
    as_rendered.mkdir()
    (as_rendered / PROMETHEUS_CONFIG_KEY).write_text(cm["data"][PROMETHEUS_CONFIG_KEY])
    full = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", str(as_rendered / PROMETHEUS_CONFIG_KEY)],
        capture_output=True,
        text=True,
    )
    output = full.stdout + full.stderr
    assert full.returncode == 0 or "field kubernetes_sd_configs not found" in output, output
    path = _local_config(cm, tmp_path, [_target("127.0.0.1:1", "x", "metrics", p.name, "x")])
    result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)")
def test_real_prometheus_keeps_only_this_deployment_and_loads_its_rules(tmp_path: Path) -> None:
    """The rendered relabelling and rules in a real Prometheus: this deployment's Triton and
    Envoy stats endpoints are kept with the labels the PromQL selects on; another deployment's
    Service, and this deployment's other ports, are dropped."""
    assert PROMETHEUS is not None
    p, objs = _anvil()
    cm = find(objs, "ConfigMap", names.prometheus_name(p))
    port = free_port()
    targets = [
        _target("127.0.0.1:9", names.triton_name(p), "metrics", p.name, "triton-0"),
        _target("127.0.0.1:10", names.envoy_stats_name(p), "stats", p.name, "envoy-0"),
        _target("127.0.0.1:11", names.triton_name(p), "grpc", p.name, "triton-0"),  # not the metrics port
        _target("127.0.0.1:12", "other-triton", "metrics", "other", "other-0"),  # another deployment
        _target(
            "127.0.0.1:13", names.triton_name(p), "metrics", "other", "spoof-0"
        ),  # same name, other instance
    ]
    path = _local_config(cm, tmp_path, targets)
    proc = start(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={path}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            "--log.level=warn",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.alive() and time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.1)
        # The scrape manager takes discovered groups in batches (every 5 s): wait for them.
        while not (active := httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]):
            assert proc.alive() and time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.2)
        dropped = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["droppedTargets"]
        assert len(dropped) == 2 * len(targets) - len(active)  # every target is offered to both jobs
        kept = sorted((t["labels"]["service"], t["labels"]["pod"], t["labels"]["namespace"]) for t in active)
        assert kept == [
            (names.envoy_name(p), "envoy-0", p.namespace),
            (names.triton_name(p), "triton-0", p.namespace),
        ]
        groups = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert [g["name"] for g in groups] == [f"sonic.{p.experiment}.{p.name}"]
        loaded = {r.get("name") for r in groups[0]["rules"]}
        assert "sonic:load" in loaded and "SonicNoReadyReplicas" in loaded
        assert all(r["health"] != "err" for r in groups[0]["rules"])
    finally:
        stop(proc)


# --- Grafana ----------------------------------------------------------------------------------------


def test_grafana_has_no_anonymous_access_and_no_credential_value() -> None:
    p, objs = _anvil()
    dep = find(objs, "Deployment", names.grafana_name(p))
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = _env(c)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # The admin login comes from the site admins' Secret, mounted as files (Grafana's __FILE
    # variables), readable by the pod's group only; never a value, never an environment variable.
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "admin"]
    (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "admin"]
    assert volume["secret"] == {"secretName": names.GRAFANA_ADMIN_SECRET, "defaultMode": 0o440}
    assert mount["readOnly"] is True
    assert dep["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == GRAFANA_UID
    for var, key in (
        ("GF_SECURITY_ADMIN_USER__FILE", names.GRAFANA_ADMIN_USER_KEY),
        ("GF_SECURITY_ADMIN_PASSWORD__FILE", names.GRAFANA_ADMIN_PASSWORD_KEY),
    ):
        assert env[var] == f"{mount['mountPath']}/{key}"
    assert not any("valueFrom" in e for e in c["env"])
    text = json.dumps(objs)
    assert "admin/admin" not in text and '"org_role"' not in text and "GF_AUTH_DISABLE_LOGIN_FORM" not in text


def test_grafana_datasources_and_dashboard() -> None:
    p, objs = _anvil()
    cm = find(objs, "ConfigMap", names.grafana_name(p))
    sources = {d["type"]: d for d in yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]}
    assert sources["prometheus"]["url"] == names.prometheus_url(p, placement("anvil", p.name)[1])
    assert sources["prometheus"]["isDefault"] is True
    assert (
        sources["tempo"]["url"]
        == f"http://{names.tempo_name(p)}.{p.namespace}.svc.cluster.local:{names.TEMPO_HTTP}"
    )
    provider = yaml.safe_load(cm["data"]["dashboards.yaml"])["providers"][0]
    pod = find(objs, "Deployment", names.grafana_name(p))["spec"]["template"]["spec"]
    dashboards = next(v for v in pod["volumes"] if v["name"] == "dashboards")
    assert dashboards["configMap"]["name"] == names.dashboard_name(p)
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "dashboards")
    assert mount["mountPath"] == provider["options"]["path"] and mount["readOnly"] is True
    find(objs, "ConfigMap", names.dashboard_name(p))
    # Without tracing: no Tempo datasource.
    q, objs = _variant("anvil", "particlenet-anvil", tracing={"enabled": False})
    cm = find(objs, "ConfigMap", names.grafana_name(q))
    assert [d["type"] for d in yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]] == [
        "prometheus"
    ]
    assert not [
        o for o in objs if o["metadata"]["name"] in (names.tempo_name(q), names.otel_collector_name(q))
    ]


def test_grafana_ingress_is_tls_only_and_without_the_grpc_annotations() -> None:
    p, objs = _anvil()
    ing = find(objs, "Ingress", names.grafana_name(p))
    host = p.monitoring.grafana.host
    assert ing["spec"]["tls"] == [{"hosts": [host], "secretName": "anvil-wildcard-tls"}]
    assert "nginx.ingress.kubernetes.io/backend-protocol" not in ing["metadata"].get("annotations", {})
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": names.grafana_name(p), "port": {"name": "http"}}
    env = _env(find(objs, "Deployment", names.grafana_name(p))["spec"]["template"]["spec"]["containers"][0])
    assert env["GF_SERVER_ROOT_URL"] == f"https://{host}/" and env["GF_SECURITY_COOKIE_SECURE"] == "true"
    # No host: no Ingress, and the NetworkPolicy admits nothing (port-forward only).
    q, objs = _variant("anvil", "particlenet-anvil", grafana={"enabled": True})
    assert not [o for o in objs if o["kind"] == "Ingress" and o["metadata"]["name"] == names.grafana_name(q)]
    assert find(objs, "NetworkPolicy", names.grafana_name(q))["spec"]["ingress"] == []


# --- tracing ----------------------------------------------------------------------------------------


def test_envoy_traces_to_the_in_namespace_collector() -> None:
    p, s = placement("anvil", "particlenet-anvil")
    assert p.envoy.tracing is None  # the stack alone turns tracing on, at the default rate
    cfg = envoy_config(p, s)
    otel = next(c for c in cfg["static_resources"]["clusters"] if c["name"] == "opentelemetry_collector")
    addr = otel["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    host, port = names.otel_collector_grpc(p).rsplit(":", 1)
    assert (addr["address"], addr["port_value"]) == (host, int(port))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][-1]["typed_config"]
    assert hcm["tracing"]["random_sampling"] == {"value": DEFAULT_SAMPLING_RATE * 100}


def test_default_sampling_rate_is_the_schema_default() -> None:
    envoy = schema.inlined("deployment")["properties"]["envoy"]["properties"]["tracing"]
    assert envoy["properties"]["samplingRate"]["default"] == DEFAULT_SAMPLING_RATE


def test_triton_traces_to_the_collector_over_otlp_http() -> None:
    p, s = placement("anvil", "particlenet-anvil")
    server = p.triton.server.model_copy(
        update={"tracing": Tracing(mode="opentelemetry", level="TIMESTAMPS", rate=100)}
    )
    q = p.model_copy(update={"triton": p.triton.model_copy(update={"server": server})})
    assert f"--trace-config=opentelemetry,url={names.otel_collector_http(q)}" in triton_args(q, [])
    objs = render_site_deployment(q, s, inputs_for(q))
    rules = find(objs, "NetworkPolicy", names.otel_collector_name(q))["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in rules] == [names.OTLP_GRPC, names.OTLP_HTTP]
    assert rules[1]["from"] == [{"podSelector": {"matchLabels": names.selector(q, "triton")}}]


def test_collector_forwards_to_tempo_and_tempo_admits_only_collector_and_grafana() -> None:
    p, objs = _anvil()
    config = yaml.safe_load(find(objs, "ConfigMap", names.otel_collector_name(p))["data"]["config.yaml"])
    assert config["exporters"]["otlp"]["endpoint"] == (
        f"{names.tempo_name(p)}.{p.namespace}.svc.cluster.local:{names.OTLP_GRPC}"
    )
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    rules = find(objs, "NetworkPolicy", names.tempo_name(p))["spec"]["ingress"]
    assert rules == [
        {
            "from": [{"podSelector": {"matchLabels": names.selector(p, "otel-collector")}}],
            "ports": [{"protocol": "TCP", "port": names.OTLP_GRPC}],
        },
        {
            "from": [{"podSelector": {"matchLabels": names.selector(p, "grafana")}}],
            "ports": [{"protocol": "TCP", "port": names.TEMPO_HTTP}],
        },
    ]
    tempo = yaml.safe_load(find(objs, "ConfigMap", names.tempo_name(p))["data"]["tempo.yaml"])
    assert tempo["usage_report"] == {"reporting_enabled": False}


def test_images_are_pinned_official_images() -> None:
    _, objs = _anvil()
    images = {
        c["image"]
        for o in objs
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    stack = {names.PROMETHEUS_IMAGE, names.GRAFANA_IMAGE, names.OTEL_COLLECTOR_IMAGE, names.TEMPO_IMAGE}
    assert stack <= images
    for image in stack:
        repo, tag = image.rsplit(":", 1)
        assert repo in (
            "prom/prometheus",
            "grafana/grafana",
            "otel/opentelemetry-collector-contrib",
            "grafana/tempo",
        )
        assert tag and tag != "latest"


def test_nothing_rendered_without_the_stack() -> None:
    p, _ = placement("geddes", "particlenet")
    kinds_names = {(o["kind"], o["metadata"]["name"]) for o in rendered(p)}
    for name in (
        names.prometheus_name(p),
        names.grafana_name(p),
        names.otel_collector_name(p),
        names.tempo_name(p),
    ):
        assert not [k for k, n in kinds_names if n == name and k != "TriggerAuthentication"]
