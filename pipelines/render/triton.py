"""Triton Inference Server: the Deployment and its headless Service.

The Service is headless so that Envoy resolves every ready pod IP and balances across them
itself (a ClusterIP would pin each HTTP/2 connection to one pod).

Draining: ``preStop`` creates :data:`names.DRAIN_FILE` and waits ``drain.delay``; the readiness
probe fails while that file exists, so Envoy's health checks and the endpoints controller take
the pod out while it still answers in-flight requests. Kubernetes then sends SIGTERM and Triton
finishes what is left within ``--exit-timeout-secs``.

The readiness probe runs ``sh`` and ``curl`` in the container (both are in the NGC
``tritonserver`` images; a custom image must provide them too).
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from pipelines.config import names
from pipelines.config.footprint import triton_surge
from pipelines.config.model import (
    FlagValue,
    NodeSelectorTerm,
    Placement,
    SelectorRequirement,
    Site,
    Toleration,
)
from pipelines.modelrepo.lock import Lock
from pipelines.render.durations import whole_seconds
from pipelines.render.errors import require
from pipelines.render.objects import affinity, meta, resources, spread, tolerations
from pipelines.render.scanner import image_checks, skip_annotations, uid_checks
from pipelines.render.security import container_security, pod_security
from pipelines.render.volumes import model_sources

STARTUP_PERIOD = 10  # seconds between start-up probes; failureThreshold covers startupTimeout
TMP_SIZE = "1Gi"
SHM_SIZE = "512Mi"  # Python-backend models exchange tensors through /dev/shm (64 Mi by default)
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
KUBERNETES_PROBE_TIMEOUT = 1  # seconds: timeoutSeconds when a probe leaves it to Kubernetes


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _text(value: object) -> str:
    return _flag(value) if isinstance(value, bool) else str(value)


def _repeated(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else (value,)


def flag_args(flags: dict[str, FlagValue]) -> list[str]:
    """``triton.server.flags`` as ``--name=value`` arguments, one list element each, sorted by name.

    A list repeats the option; a mapping (metrics-config, trace-config) gives one
    ``--name=<setting>=<value>`` per setting; ``trace`` is trace-config written as a structure,
    its ``opentelemetry`` settings becoming ``--trace-config=opentelemetry,<setting>=<value>``.
    The schema admits only known options with typed values, and refuses those set above.
    """
    args: list[str] = []
    for name in sorted(flags):
        value = flags[name]
        option = "trace-config" if name == "trace" else name
        if not isinstance(value, dict):
            args += [f"--{option}={_text(v)}" for v in _repeated(value)]
            continue
        for key in sorted(value):
            setting = value[key]
            if isinstance(setting, dict):  # trace: {opentelemetry: {...}}
                for sub in sorted(setting):
                    args += [f"--{option}={key},{sub}={_text(v)}" for v in _repeated(setting[sub])]
            else:
                args += [f"--{option}={key}={_text(v)}" for v in _repeated(setting)]
    return args


def restricted_protocol_args(key: str) -> list[str]:
    """Triton's management protocols (gRPC and HTTP) behind the admin header with value ``key``.

    In the cluster ``key`` is ``$(SONIC_TRITON_ADMIN_KEY)``, which the kubelet expands from the
    container's environment (the namespace's Secret): the key itself is never rendered.
    """
    groups = ",".join(names.TRITON_RESTRICTED_PROTOCOLS)
    return [
        f"--grpc-restricted-protocol={groups}:{names.TRITON_ADMIN_HEADER}={key}",
        f"--http-restricted-api={groups}:{names.TRITON_ADMIN_HEADER}={key}",
    ]


def triton_args(p: Placement, repositories: list[str]) -> list[str]:
    """``tritonserver`` arguments, one list element each (never a shell string)."""
    s = p.triton.server
    args = [f"--model-repository={r}" for r in repositories]
    args += [
        f"--http-port={names.TRITON_HTTP}",
        f"--grpc-port={names.TRITON_GRPC}",
        f"--metrics-port={names.TRITON_METRICS}",
        "--allow-metrics=true",
        f"--log-verbose={s.log_verbose}",
        f"--log-info={_flag(s.log_info)}",
        f"--strict-model-config={_flag(s.strict_model_config)}",
        f"--exit-on-error={_flag(s.exit_on_error)}",
        f"--exit-timeout-secs={whole_seconds(s.exit_timeout)}",
        f"--model-control-mode={s.model_control_mode}",
        *restricted_protocol_args(f"$({names.TRITON_ADMIN_ENV})"),
    ]
    if s.model_control_mode == "poll":
        args.append(f"--repository-poll-secs={whole_seconds(s.poll_interval, 1)}")
    if s.model_control_mode == "explicit":
        # Explicit mode loads nothing by itself: name every declared model.
        args += [f"--load-model={m.name}" for m in p.models]
    for backend in sorted(s.backend_config):
        for key, value in sorted(s.backend_config[backend].items()):
            args.append(f"--backend-config={backend},{key}={value}")
    t = s.tracing
    if t is not None:
        args += [
            f"--trace-config=mode={t.mode}",
            f"--trace-config=level={t.level}",
            f"--trace-config=rate={t.rate}",
        ]
        endpoint = names.otel_collector_http(p) if p.monitoring.tracing.enabled else t.endpoint
        if t.mode == "opentelemetry" and endpoint:
            args.append(f"--trace-config=opentelemetry,url={endpoint}")
        if t.mode == "triton":
            args.append(f"--trace-config=triton,file={names.TRITON_TRACE_FILE}")
    return args + flag_args(s.flags)


def _readiness_path(p: Placement) -> str:
    rm = p.triton.probes.readiness_model
    if rm is None:
        return "/v2/health/ready"
    if rm.version is None:
        return f"/v2/models/{rm.name}/ready"
    return f"/v2/models/{rm.name}/versions/{rm.version}/ready"


def readiness_command(p: Placement) -> list[str]:
    """Ready = Triton (or the readiness model) ready AND not draining."""
    r = p.triton.probes.readiness
    timeout = KUBERNETES_PROBE_TIMEOUT if r.mode == "kubernetesDefaults" else whole_seconds(r.timeout, 1)
    url = f"http://127.0.0.1:{names.TRITON_HTTP}{_readiness_path(p)}"
    script = (
        f"test ! -e {shlex.quote(names.DRAIN_FILE)} && "
        f"exec curl --fail --silent --show-error --output /dev/null --max-time {timeout} {shlex.quote(url)}"
    )
    return ["/bin/sh", "-c", script]


def prestop_command(p: Placement) -> list[str]:
    """Create the drain file, then give Envoy ``drain.delay`` to stop sending new requests."""
    delay = whole_seconds(p.triton.drain.delay)
    return ["/bin/sh", "-c", f"touch {shlex.quote(names.DRAIN_FILE)} && sleep {delay}"]


def _readiness_probe(p: Placement) -> dict[str, Any]:
    """By ``probes.readiness.mode``: our timing, Kubernetes' defaults (SuperSONIC's ``reset``), or none."""
    r = p.triton.probes.readiness
    if r.mode == "off":
        # Ready once the start-up probe passed; Envoy's gRPC health checks still skip a pod that
        # does not serve, and Kubernetes takes terminating pods out of the Service (docs/configuration.md).
        return {}
    probe: dict[str, Any] = {"exec": {"command": readiness_command(p)}}
    if r.mode == "default":
        probe["periodSeconds"] = whole_seconds(r.period, 1)
        probe["timeoutSeconds"] = whole_seconds(r.timeout, 1)
        probe["failureThreshold"] = r.failure_threshold
    return {"readinessProbe": probe}


def _probes(p: Placement) -> dict[str, Any]:
    pr = p.triton.probes
    return {
        "startupProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": STARTUP_PERIOD,
            "timeoutSeconds": whole_seconds(pr.readiness.timeout, 1),
            "failureThreshold": max(1, math.ceil(pr.startup_timeout / STARTUP_PERIOD)),
        },
        **_readiness_probe(p),
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": whole_seconds(pr.liveness.period, 1),
            "timeoutSeconds": whole_seconds(pr.liveness.timeout, 1),
            "failureThreshold": pr.liveness.failure_threshold,
        },
    }


def _scheduling(p: Placement, site: Site) -> tuple[dict[str, Any], dict[str, Any]]:
    """(GPU resources, pod scheduling fields): the GPU class's placement plus the deployment's own.

    ``gpu.count: 0`` keeps the class's placement (node selector, product affinity, tolerations)
    and requests no GPU: a CPU-only deployment on GPU nodes (Anvil's SuperSONIC values).
    """
    gpu = p.triton.gpu
    selector = dict(p.triton.node_selector)
    class_term: NodeSelectorTerm | None = None
    class_tolerations: tuple[Toleration, ...] = ()
    gpu_resources: dict[str, Any] = {}
    if gpu is not None:
        cls = site.gpu_classes.get(gpu.gpu_class)
        require(
            cls is not None,
            "semantic.gpu_class_known",
            f"triton.gpu.class: {gpu.gpu_class!r} is not a GPU class of site {site.name!r}",
        )
        assert cls is not None
        selector = {**cls.node_selector, **p.triton.node_selector}
        if cls.products:
            product = SelectorRequirement(key=GPU_PRODUCT_LABEL, operator="In", values=cls.products)
            class_term = NodeSelectorTerm(match_expressions=(product,))
        class_tolerations = cls.tolerations
        if gpu.count:
            gpu_resources = {cls.resource: gpu.count}
    pod: dict[str, Any] = {}
    if selector:
        pod["nodeSelector"] = selector
    placed = affinity(p.triton.affinity, class_term)
    if placed:
        pod["affinity"] = placed
    tolerated = tolerations(class_tolerations, p.triton.tolerations)
    if tolerated:
        pod["tolerations"] = tolerated
    return gpu_resources, pod


def _pod_metadata(p: Placement) -> dict[str, Any]:
    out: dict[str, Any] = {"labels": names.labels(p, "triton")}
    if p.triton.pod_annotations:
        out["annotations"] = dict(p.triton.pod_annotations)
    return out


def render_triton(p: Placement, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
    """The Triton Deployment and its headless Service."""
    r = p.triton.resources
    require(
        bool(r.cpu and r.memory),
        "semantic.resources_complete",
        f"{p.ref}: triton.resources needs both cpu and memory",
    )
    sources = model_sources(p, site, lock)
    gpu_resources, scheduling = _scheduling(p, site)
    env = [*sources.env, names.triton_admin_env()]
    if not gpu_resources:
        # The NGC image sets NVIDIA_VISIBLE_DEVICES=all: without this a CPU pod on a GPU node sees every GPU.
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    container: dict[str, Any] = {
        "name": "triton",
        "image": p.triton.image,
        "command": ["tritonserver"],
        "args": triton_args(p, sources.repositories),
        "ports": [
            {"name": "http", "containerPort": names.TRITON_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": names.TRITON_GRPC, "protocol": "TCP"},
            {"name": "metrics", "containerPort": names.TRITON_METRICS, "protocol": "TCP"},
        ],
        "resources": resources(r, gpu_resources),
        **_probes(p),
        "lifecycle": {"preStop": {"exec": {"command": prestop_command(p)}}},
        # Backends keep caches and the Python stub's files outside /tmp: the root stays writable.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
            *sources.mounts,
        ],
    }
    if env:
        container["env"] = env
    pod_spec: dict[str, Any] = {
        "serviceAccountName": names.triton_name(p),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": whole_seconds(p.triton.drain.grace_period),
        "securityContext": pod_security(p.triton.run_as_user),
        "containers": [container],
        "topologySpreadConstraints": spread(p, "triton"),
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
            *sources.volumes,
        ],
        **scheduling,
    }
    spec: dict[str, Any] = {
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": names.selector(p, "triton")},
        # GPU pods never surge: a rollout must not claim more GPUs than the quota counts.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}
            if triton_surge(p) == 0
            else {"maxSurge": triton_surge(p), "maxUnavailable": 0},
        },
        "template": {"metadata": _pod_metadata(p), "spec": pod_spec},
    }
    if p.autoscaling is None:
        # With autoscaling KEDA owns the count: omitted, so Argo CD never fights it.
        spec["replicas"] = p.replicas
    # Scanner findings accepted on this Deployment only (pipelines/render/scanner.py).
    accepted = skip_annotations(
        "CKV_K8S_22",
        "CKV_K8S_35",
        *uid_checks(p.triton.run_as_user),
        *image_checks(p.triton.image),
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(p, "triton", names.triton_name(p), **accepted),
        "spec": spec,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(p, "triton", names.triton_name(p)),
        "spec": {
            "clusterIP": "None",
            "selector": names.selector(p, "triton"),
            "ports": [
                {"name": "http", "port": names.TRITON_HTTP, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": names.TRITON_GRPC,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
                {"name": "metrics", "port": names.TRITON_METRICS, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    return [deployment, service]
