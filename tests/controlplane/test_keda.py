"""Every rendered ScaledObject, run by the real KEDA operator against a real Prometheus.

Prometheus scrapes with the rendered scrape jobs; for the scale-to-zero deployment it scrapes a
real Envoy started from the rendered configuration (no Triton runs: the state a scaled-to-zero
deployment is in). Only the Prometheus address changes (a loopback URL instead of the site's) and
the polling interval is shortened so the test does not wait 15 s per decision.

Upstream rules these tests hold the renderer to (kedacore/keda v2.20):
- pkg/scalers/prometheus_scaler.go: an empty query result is an error unless ignoreNullValues;
- controllers/keda/scaledobject_controller.go and pkg/scaling/scale_handler.go: a scaler error sets
  the ScaledObject's Ready condition False, which Argo CD's health check
  (resource_customizations/keda.sh/ScaledObject/health.lua) reports as Degraded;
- pkg/scaling/executor/scale_scaledobjects.go: an active trigger scales a zero-replica target to
  max(minReplicaCount, 1);
- controllers/keda/hpa.go: the HPA KEDA creates carries min/max and the behaviour of
  advanced.horizontalPodAutoscalerConfig (min 1 when minReplicaCount is 0).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from pipelines.config.checked import load_tree
from pipelines.config.names import TRITON_ADMIN_SECRET
from pipelines.local import envoy as local_envoy
from pipelines.local import prometheus as local_prometheus
from pipelines.local.processes import Proc, StartError, free_ports, stop, wait_until
from tests.controlplane.conftest import needs_controller
from tests.support.controlplane import ControlPlane, apply_object, ensure_namespace

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_SECONDS = 1.0
POLL_SECONDS = 1


def rendered_scaled_objects() -> list[Path]:
    return sorted(ROOT.glob("gitops/rendered/*/*/*/scaledobject.yaml"))


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def for_test(directory: Path, namespace: str, prometheus: str) -> list[dict[str, Any]]:
    """The deployment's Deployments, ScaledObject and TriggerAuthentication, moved into
    ``namespace`` and pointed at ``prometheus``; everything else as rendered."""
    objs = []
    for name in ("deployment.yaml", "scaledobject.yaml", "triggerauthentication.yaml"):
        if not (directory / name).exists():
            continue
        for doc in load(directory / name):
            doc = copy.deepcopy(doc)
            doc["metadata"]["namespace"] = namespace
            if doc["kind"] == "ScaledObject":
                doc["spec"]["pollingInterval"] = POLL_SECONDS
                for trigger in doc["spec"]["triggers"]:
                    trigger["metadata"]["serverAddress"] = prometheus
            objs.append(doc)
    return objs


@pytest.fixture(scope="module")
def prometheus_and_envoy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """Real Prometheus with the scale-to-zero deployment's rendered scrape jobs, scraping a real
    Envoy built from its rendered configuration; yields (Prometheus URL, Envoy listener port)."""
    binary = local_prometheus.prometheus_binary()
    if binary is None:
        pytest.skip("prometheus not installed (scripts/setup.sh installs it)")
    tree = load_tree(ROOT)
    p = next(
        pl for d in tree.deployments for pl in d.placements if pl.autoscaling and pl.autoscaling.min == 0
    )
    site = tree.sites[p.site]
    run = tmp_path_factory.mktemp("keda")
    prom_port, listen, admin, stats, absent = free_ports(5)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = json.dumps({"keys": [{**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "test"}]})
    config = local_envoy.local_config(
        p,
        site,
        endpoints=[("127.0.0.1", absent)],  # where Triton would be: nothing listens
        listen_port=listen,
        admin_port=admin,
        stats_port=stats,
        prometheus_url=f"http://127.0.0.1:{prom_port}",
        jwks=jwks,
    )
    procs: list[Proc] = []
    try:
        procs.append(local_envoy.run_config(config, run, "envoy", hosts=0, workers=1))
        cfg = local_prometheus.write_files(
            p, run, triton_targets=[], envoy_targets=[f"127.0.0.1:{stats}"], scrape_interval=SCRAPE_SECONDS
        )
        prom = local_prometheus.start_prometheus(
            binary, cfg, run / "tsdb", run / "prometheus.log", port=prom_port
        )
        procs.append(prom)
        local_prometheus.wait_ready(prom, prom_port, targets=1)
        yield f"http://127.0.0.1:{prom_port}", listen
    finally:
        for proc in reversed(procs):
            stop(proc)


def get(cp: ControlPlane, path: str) -> dict[str, Any]:
    status, body = cp.request("GET", path)
    assert status == 200, f"GET {path}: {status} {body}"
    return body  # type: ignore[no-any-return]


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}


def deploy(cp: ControlPlane, directory: Path, namespace: str, prometheus: str) -> dict[str, Any]:
    ensure_namespace(cp, namespace)
    # The Secrets the site admin creates in a deployment namespace (docs/gitops.md); values are
    # never rendered. KEDA needs them too: it resolves the scale target's env, Secret references
    # included, and a missing one turns the ScaledObject Ready=False
    # (keda pkg/scaling/resolver/scale_resolvers.go resolveEnv).
    for name, key in (("prometheus-token", "token"), (TRITON_ADMIN_SECRET, "key")):
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {key: "not-a-real-value"},
        }
        apply_object(cp, secret)
    scaled = None
    for obj in for_test(directory, namespace, prometheus):
        status, body = apply_object(cp, obj)
        assert status in (200, 201), f"{obj['kind']}: {status} {body}"
        if obj["kind"] == "ScaledObject":
            scaled = obj
    assert scaled is not None
    return scaled


@pytest.mark.parametrize("path", rendered_scaled_objects(), ids=lambda p: "/".join(p.parent.parts[-3:]))
def test_keda_runs_the_rendered_scaled_object(
    control_plane: ControlPlane, prometheus_and_envoy: tuple[str, int], path: Path
) -> None:
    """No Triton metrics at all (nothing runs): the ScaledObject is Ready and the HPA carries
    the rendered bounds and behaviour."""
    needs_controller(control_plane, "keda")
    prometheus, _ = prometheus_and_envoy
    namespace = "keda-" + "-".join(path.parent.parts[-3:])[:50]
    scaled = deploy(control_plane, path.parent, namespace, prometheus)
    name = scaled["metadata"]["name"]
    so_path = f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{name}"
    hpa_path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/keda-hpa-{name}"

    def hpa_and_ready() -> bool:
        status, _ = control_plane.request("GET", hpa_path)
        return status == 200 and conditions(get(control_plane, so_path)).get("Ready") == "True"

    try:
        wait_until(f"{name}: Ready and its HPA created", hpa_and_ready, timeout=60, interval=0.5)
    except StartError:
        pytest.fail(f"{name}: {json.dumps(get(control_plane, so_path).get('status'))[:1500]}")
    hpa = get(control_plane, hpa_path)["spec"]
    spec = scaled["spec"]
    assert hpa["maxReplicas"] == spec["maxReplicaCount"]
    assert hpa["minReplicas"] == max(spec.get("minReplicaCount", 0), 1)
    assert hpa["behavior"] == spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert hpa["scaleTargetRef"]["name"] == spec["scaleTargetRef"]["name"]
    # Still Ready after several polls of the empty metrics (a scaler error would flip it).
    polls = 0

    def polled_again() -> bool:
        nonlocal polls
        assert conditions(get(control_plane, so_path)).get("Ready") == "True", get(control_plane, so_path)[
            "status"
        ]
        polls += 1
        return polls >= 6

    wait_until(f"{name}: stays Ready", polled_again, timeout=30, interval=POLL_SECONDS)


def test_scale_to_zero_wakes_on_envoy_traffic(
    control_plane: ControlPlane, prometheus_and_envoy: tuple[str, int]
) -> None:
    """At zero replicas, requests reaching Envoy (even refused ones) wake Triton."""
    needs_controller(control_plane, "keda")
    prometheus, envoy_port = prometheus_and_envoy
    directory = next(
        p.parent for p in rendered_scaled_objects() if load(p)[0]["spec"].get("minReplicaCount", 0) == 0
    )
    namespace = "keda-wake"
    scaled = deploy(control_plane, directory, namespace, prometheus)
    target = scaled["spec"]["scaleTargetRef"]["name"]
    dep_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{target}"
    so_path = f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{scaled['metadata']['name']}"

    wait_until(
        "KEDA finds the trigger inactive and scales the idle deployment to zero",
        lambda: (
            get(control_plane, dep_path)["spec"].get("replicas") == 0
            and conditions(get(control_plane, so_path)).get("Active") == "False"
        ),
        timeout=60,
        interval=0.5,
    )

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{envoy_port}")
    sent = 0

    def traffic_wakes_it() -> bool:
        nonlocal sent
        for _ in range(5):
            # No token, no Triton: refused, but counted by Envoy (downstream_rq_total).
            with pytest.raises(InferenceServerException):
                client.is_server_live(client_timeout=2)
            sent += 1
        return (get(control_plane, dep_path)["spec"].get("replicas") or 0) >= 1

    wait_until("a request wakes the deployment", traffic_wakes_it, timeout=90, interval=0.5)
    client.close()
    assert conditions(get(control_plane, so_path)).get("Active") == "True"
    assert conditions(get(control_plane, so_path)).get("Ready") == "True"
    assert sent > 0
