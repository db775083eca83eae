"""The deployment fields SuperSONIC users rely on (issue 12 item 2), as the rendered objects carry them.

Each test writes a deployment using the field into a copy of the example tree, loads it through
the real loader (schema, defaults, rules) and renders it, so the field is followed from YAML to
the object Kubernetes receives.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest

from pipelines.config import load_tree, names
from pipelines.config.model import AdmissionGate, Placement, Site
from pipelines.render import render_site_deployment
from pipelines.render.envoy.bootstrap import envoy_config
from pipelines.render.envoy.gate import LUA_FILTER
from pipelines.render.metrics import gate_query, load_query, queue_latency_query
from pipelines.render.triton import flag_args
from tests.render.conftest import FakePrometheus
from tests.render.support import find, placement, rendered, unlocked_inputs
from tests.render.test_admission_gate import repository_index, start, vector
from tests.render.test_envoy import with_envoy

CPU = """\
name: zz-case
experiment: cms
sites:
  uchicago: {namespace: cms-af}
modelRepository:
  nfs: [cms/models]
models:
  - name: m1
    maxBatchSize: 8
    inputs: [{name: x, dtype: FP32, dims: [4]}]
    outputs: [{name: y, dtype: FP32, dims: [2]}]
"""

EVERYTHING = (
    CPU
    + """\
triton:
  gpu: {class: A100, count: 0}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}   # the class's own: kept once
    - {key: dedicated, operator: Equal, value: sonic, effect: NoSchedule}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a, b]}]
          - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [c]}]
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 50
          preference: {matchExpressions: [{key: fast-disk, operator: Exists}]}
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app.kubernetes.io/instance: zz-case}}
  podAnnotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: "false"}
  extraMounts:
    - {cvmfs: /cvmfs/cms.cern.ch/el9_amd64_gcc12/data, mountPath: /opt/data/cms}
  server:
    flags:
      allow-gpu-metrics: true
      log-format: ISO8601
      metrics-interval-ms: 2000
      rate-limit-resource: ["R1:10", "R2:4:0"]
      metrics-config: {summary_latencies: true}
      trace:
        rate: 100
        level: [TIMESTAMPS, TENSORS]
        opentelemetry: {url: "http://otel.monitoring.svc:4318/v1/traces", resource: [service.name=cms-zz]}
  probes:
    readiness: {mode: kubernetesDefaults}
envoy:
  service:
    type: LoadBalancer
    labels: {team: cms}
    annotations: {metallb.universe.tf/address-pool: private}
    alias: supersonic
  nodeSelector: {pool: sonic}
  tolerations:
    - {key: dedicated, operator: Equal, value: sonic, effect: NoSchedule}
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [envoy]}]
  podAnnotations: {prometheus.io/scrape: "false"}
  ingress:
    host: cms-zz.af.uchicago.edu
    className: nginx-internal
    annotations:
      nginx.ingress.kubernetes.io/proxy-read-timeout: "300"
    tls: default
  admissionGate:
    metric: query
    query: max(nv_inference_pending_request_count{namespace="cms-af"})
"""
)


def _load(tree: Path, text: str, *, allowed: str = "") -> tuple[Placement, Site]:
    if allowed:
        site = tree / "gitops" / "sites" / "uchicago.yaml"
        site.write_text(
            site.read_text().replace(
                "  annotations:\n", f"  allowedAnnotations: {allowed}\n  annotations:\n", 1
            )
        )
    (tree / "experiments" / "cms" / "zz-case.yaml").write_text(text)
    t = load_tree(tree)
    p = t.deployment("cms/zz-case").placements[0]
    return p, t.sites[p.site]


@pytest.fixture
def everything(example_tree: Path) -> tuple[Placement, Site, list[dict[str, Any]]]:
    p, site = _load(
        example_tree,
        EVERYTHING,
        allowed="[nginx.ingress.kubernetes.io/proxy-*, nginx.ingress.kubernetes.io/backend-protocol]",
    )
    return p, site, render_site_deployment(p, site, unlocked_inputs(p))


def _deployment(objs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return next(
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(f"-{component}")
    )


def _pod(objs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = _deployment(objs, component)["spec"]["template"]["spec"]
    return spec


# --- Envoy Service, alias and placement --------------------------------------------------------------


def test_envoy_service_type_labels_and_annotations(everything: Any) -> None:
    _, _, objs = everything
    svc = find(objs, "Service", "zz-case-envoy")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["labels"]["team"] == "cms"
    assert svc["metadata"]["labels"][names.ROLE_LABEL] == "client"
    assert svc["metadata"]["annotations"]["metallb.universe.tf/address-pool"] == "private"
    assert [port["port"] for port in svc["spec"]["ports"]] == [names.ENVOY_GRPC]


def test_alias_service_has_the_same_pods_and_only_the_grpc_port(everything: Any) -> None:
    _, _, objs = everything
    main, alias = find(objs, "Service", "zz-case-envoy"), find(objs, "Service", "supersonic")
    assert alias["spec"]["type"] == "ClusterIP"  # the alias keeps an in-cluster name working
    assert alias["spec"]["selector"] == main["spec"]["selector"] == names.selector(_p(everything), "envoy")
    assert alias["spec"]["ports"] == main["spec"]["ports"]
    assert alias["metadata"]["namespace"] == "cms-af"


def _p(everything: Any) -> Placement:
    p: Placement = everything[0]
    return p


def test_the_admin_port_is_in_no_service_of_any_deployment(everything: Any) -> None:
    _, _, objs = everything
    example_objs = [o for p, _ in _examples() for o in rendered(p)]
    services = [o for o in [*objs, *example_objs] if o["kind"] == "Service"]
    assert len(services) > 10
    for svc in services:
        ports = {port["port"] for port in svc["spec"]["ports"]} | {
            port.get("targetPort") for port in svc["spec"]["ports"]
        }
        assert names.ENVOY_ADMIN not in ports, svc["metadata"]["name"]


def _examples() -> list[tuple[Placement, Site]]:
    from tests.render.support import placements

    return placements()


def test_envoy_pods_carry_placement_and_annotations(everything: Any) -> None:
    _, _, objs = everything
    pod = _pod(objs, "envoy")
    assert pod["nodeSelector"] == {"pool": "sonic"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "sonic", "effect": "NoSchedule"}
    ]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["envoy"]}
    ]
    annotations = _deployment(objs, "envoy")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "false"
    assert names.CONFIG_CHECKSUM_ANNOTATION in annotations


def test_geddes_example_runs_envoy_on_the_dedicated_pool_behind_metallb() -> None:
    p, _ = placement("geddes", "particlenet")
    objs = rendered(p)
    svc = find(objs, "Service", "particlenet-envoy")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["metallb.universe.tf/address-pool"] == "geddes-private-pool"
    pod = _pod(objs, "envoy")
    assert pod["nodeSelector"] == {"cms-af-prod": "true"}
    assert pod["tolerations"] == [
        {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "cms-af", "effect": "NoSchedule"}
    ]
    # The override is Geddes's: Nautilus keeps the default ClusterIP Service and no placement.
    q, _ = placement("nautilus", "particlenet")
    assert find(rendered(q), "Service", "particlenet-envoy")["spec"]["type"] == "ClusterIP"
    assert "nodeSelector" not in _pod(rendered(q), "envoy")


# --- Triton placement, GPU nodes without a GPU --------------------------------------------------------


def test_triton_affinity_must_hold_together_with_the_gpu_class(everything: Any) -> None:
    _, site, objs = everything
    pod = _pod(objs, "triton")
    product = {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": list(site.gpu_classes["A100"].products),
    }
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    # (class AND zone a|b) OR (class AND zone c): every term keeps the class's requirement.
    assert terms == [
        {
            "matchExpressions": [
                product,
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
            ]
        },
        {
            "matchExpressions": [
                product,
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["c"]},
            ]
        },
    ]
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred == [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "fast-disk", "operator": "Exists"}]}}
    ]
    assert (
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"]
        == 100
    )
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "sonic", "effect": "NoSchedule"},
    ]
    assert pod["nodeSelector"] == {"gpu": "true"}  # the class's
    meta = _deployment(objs, "triton")["spec"]["template"]["metadata"]
    assert meta["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}


def test_gpu_count_zero_places_on_gpu_nodes_without_a_gpu(everything: Any) -> None:
    p, _, objs = everything
    assert p.gpus_per_pod == 0
    triton = _deployment(objs, "triton")
    c = triton["spec"]["template"]["spec"]["containers"][0]
    assert not any("gpu" in key for key in c["resources"]["requests"])
    assert not any("gpu" in key for key in c["resources"]["limits"])
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in c["env"]
    assert triton["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "affinity" in triton["spec"]["template"]["spec"]


def test_anvil_example_is_cpu_only_on_a10_nodes() -> None:
    p, site = placement("anvil", "particlenet-anvil")
    pod = _pod(rendered(p), "triton")
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A10"]}]}
    ]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert site.gpu_classes["A10"].products == ("NVIDIA-A10",)


# --- Triton flags, extra mounts, readiness -----------------------------------------------------------


def test_flags_are_separate_arguments_after_the_renderers_own(everything: Any) -> None:
    _, _, objs = everything
    args = _pod(objs, "triton")["containers"][0]["args"]
    flags = [
        "--allow-gpu-metrics=true",
        "--log-format=ISO8601",
        "--metrics-config=summary_latencies=true",
        "--metrics-interval-ms=2000",
        "--rate-limit-resource=R1:10",
        "--rate-limit-resource=R2:4:0",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=level=TENSORS",
        "--trace-config=opentelemetry,resource=service.name=cms-zz",
        "--trace-config=opentelemetry,url=http://otel.monitoring.svc:4318/v1/traces",
        "--trace-config=rate=100",
    ]
    assert args[-len(flags) :] == flags
    assert len([a for a in args if a.startswith("--model-repository=")]) == 1  # never repeated by a flag


def test_trace_and_trace_config_render_alike() -> None:
    structured = flag_args({"trace": {"rate": 5, "opentelemetry": {"resource": ("a=b",)}}})
    option_form = flag_args({"trace-config": {"rate": 5, "opentelemetry,resource": ("a=b",)}})
    assert structured == option_form == ["--trace-config=opentelemetry,resource=a=b", "--trace-config=rate=5"]


def test_a_flag_value_never_reaches_a_shell() -> None:
    """Arguments are argv entries: a value with spaces stays one argument (the schema refuses most anyway)."""
    [arg] = flag_args({"model-config-name": "a b; rm -rf /"})
    assert shlex.split(shlex.quote(arg)) == [arg]


def test_extra_cvmfs_mount_is_read_only_at_the_chosen_path(everything: Any) -> None:
    _, _, objs = everything
    pod = _pod(objs, "triton")
    mounts = pod["containers"][0]["volumeMounts"]
    assert {
        "name": "cvmfs",
        "mountPath": "/opt/data/cms",
        "subPath": "cms.cern.ch/el9_amd64_gcc12/data",
        "readOnly": True,
    } in mounts
    assert not any(m["mountPath"] == names.CVMFS_MOUNT for m in mounts)  # no CVMFS model repository here
    [volume] = [v for v in pod["volumes"] if v["name"] == "cvmfs"]
    assert volume == {
        "name": "cvmfs",
        "hostPath": {"path": "/cvmfs", "type": "Directory"},
    }  # uchicago's hostPath
    args = pod["containers"][0]["args"]
    assert not any(a.startswith("--model-repository=/opt/data") for a in args)  # not a model repository


def test_readiness_modes(example_tree: Path) -> None:
    def probe(mode: str) -> dict[str, Any] | None:
        text = CPU + f"triton:\n  probes:\n    readiness: {{mode: {mode}}}\n"
        p, site = _load(example_tree, text)
        return _pod(render_site_deployment(p, site, unlocked_inputs(p)), "triton")["containers"][0].get(
            "readinessProbe"
        )

    default = probe("default")
    assert default is not None and default["periodSeconds"] == 10 and default["failureThreshold"] == 3
    k8s = probe("kubernetesDefaults")
    assert k8s is not None and set(k8s) == {"exec"}  # period, timeout, threshold: Kubernetes' defaults
    assert "--max-time 1 " in k8s["exec"]["command"][-1] and names.DRAIN_FILE in k8s["exec"]["command"][-1]
    assert probe('"off"') is None


# --- ingress ------------------------------------------------------------------------------------------


def test_ingress_class_annotations_and_default_certificate(everything: Any) -> None:
    _, site, objs = everything
    ing = find(objs, "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx-internal"
    annotations = ing["metadata"]["annotations"]
    # The site's own annotations stay; the deployment adds its allowed ones (it may not replace the site's).
    assert (
        annotations["nginx.ingress.kubernetes.io/backend-protocol"]
        == site.ingress.annotations["nginx.ingress.kubernetes.io/backend-protocol"]
    )
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "300"
    assert ing["spec"]["tls"] == [{"hosts": ["cms-zz.af.uchicago.edu"]}]
    assert site.ingress is not None and not site.ingress.default_certificate


def test_tls_default_wins_over_the_sites_secret() -> None:
    p, site = placement("anvil", "particlenet-anvil")
    assert site.ingress is not None and site.ingress.tls_secret
    ing = p.envoy.ingress
    assert ing is not None
    q = p.model_copy(
        update={"envoy": p.envoy.model_copy(update={"ingress": ing.model_copy(update={"tls": "default"})})}
    )
    envoy_ingress = find(render_site_deployment(q, site, unlocked_inputs(q)), "Ingress", f"{p.name}-envoy")
    assert envoy_ingress["spec"]["tls"] == [{"hosts": [ing.host]}]


# --- the admission gate's own metric ------------------------------------------------------------------


def test_gate_query_reaches_the_lua_route_metadata(everything: Any) -> None:
    p, site, _ = everything
    cfg = envoy_config(p, site)
    routes = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][1]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    meta = routes[0]["metadata"]["filter_metadata"][LUA_FILTER]
    assert "max%28nv_inference_pending_request_count%7Bnamespace%3D%22cms-af%22%7D%29" in meta["path"]
    assert gate_query(p) != load_query(p) == queue_latency_query(p)


def test_gate_metric_queue_latency_apart_from_autoscaling() -> None:
    p, _ = placement("geddes", "particlenet")
    assert p.autoscaling is not None
    pending = p.autoscaling.model_copy(update={"metric": "pendingRequests"})
    gate = AdmissionGate(
        enabled=True,
        threshold=20,
        cache_for=5,
        query_timeout=1,
        on_prometheus_error="open",
        metric="queueLatency",
    )
    q = with_envoy(p.model_copy(update={"autoscaling": pending}), admission_gate=gate)
    assert gate_query(q) == queue_latency_query(q) != load_query(q)
    unset = with_envoy(q, admission_gate=gate.model_copy(update={"metric": None}))
    assert gate_query(unset) == load_query(unset)  # unset: the autoscaling metric, as before


@pytest.mark.integration
def test_real_envoy_asks_prometheus_for_the_gates_own_query(
    run_envoy: Any, triton_server: Any, fake_prometheus: Any
) -> None:
    from tests.render.test_admission_gate import gated

    prom: FakePrometheus = fake_prometheus()
    prom.answer(vector("500", ts=1712345678))
    p, site = gated()
    own = 'max(nv_inference_pending_request_count{namespace="cms-af"})'
    assert p.envoy.admission_gate is not None
    p = with_envoy(
        p, admission_gate=p.envoy.admission_gate.model_copy(update={"metric": "query", "query": own})
    )
    ports = start(run_envoy, triton_server, p, site, prom.url())
    assert repository_index(ports.listen) == grpc.StatusCode.UNAVAILABLE  # 500 is above the threshold
    [seen] = prom.queries()
    assert seen.query == {"query": [own]}


# --- the rendered objects are valid Kubernetes ---------------------------------------------------------


@pytest.mark.parametrize("version", ["1.28.0", "1.34.0"])
def test_everything_passes_kubernetes_validate_strict(everything: Any, version: str) -> None:
    _, _, objs = everything
    checked = 0
    for obj in objs:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        if group and not group.endswith(".k8s.io") and group not in ("apps", "policy", "batch"):
            continue  # custom resources: checked against their CRDs elsewhere
        kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
        checked += 1
    assert checked >= 10


def test_kubernetes_validate_notices_a_broken_affinity(everything: Any) -> None:
    """The check above can fail: a misspelt affinity field is refused."""
    _, _, objs = everything
    triton = copy.deepcopy(_deployment(objs, "triton"))
    triton["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringScheduling"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(triton, "1.31.0", strict=True)
