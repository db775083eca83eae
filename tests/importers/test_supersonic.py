"""``sonic import supersonic``: the chart's keys, the report, the round trip, the hostile corpus.

The covering files in ``values/`` together set every key of the chart's ``values.yaml``; each one
is imported, validated with the repository's own rules (site fragment merged), rendered, and the
rendered objects are checked for each mapped setting.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator

from pipelines.cli import cli
from pipelines.config import ConfigErrors, load_tree
from pipelines.config.checked import check_tree
from pipelines.config.loader import load_file
from pipelines.config.schema import inlined
from pipelines.importers.supersonic import ImportResult, import_values, merge_fragment, validate_import
from pipelines.importers.supersonic.chart import defaults, schema
from pipelines.importers.supersonic.table import Key, format_key, table
from pipelines.importers.supersonic.tritonargs import ArgsProblem, command_line, options
from pipelines.render import render_site_deployment
from pipelines.render.inputs import read_deployment_inputs
from tests.conftest import FIXTURE

HERE = Path(__file__).parent
VALUES = HERE / "values"
CORPUS = HERE / "invalid"

# Keys the chart's values.yaml documents only in comments (the storage options).
DOCUMENTED: set[Key] = {
    ("triton", "modelRepository", "storageType"),
    ("triton", "modelRepository", "pvc", "claimName"),
    ("triton", "modelRepository", "nfs", "server"),
    ("triton", "modelRepository", "nfs", "path"),
}


@dataclass(frozen=True)
class Cover:
    file: str
    experiment: str
    site: str
    name: str | None = None
    models: tuple[str, ...] = ()


COVERS = [
    Cover("cover-everything.yaml", "cms", "geddes"),
    Cover("cover-pvc.yaml", "atlas", "uchicago", models=("traccc",)),
    Cover("cover-nfs.yaml", "atlas", "uchicago"),
    Cover("real-geddes-cms.yaml", "cms", "geddes", name="particlenet-geddes"),
    Cover("real-anvil-cms.yaml", "cms", "anvil", name="cms-anvil", models=("particlenet_AK4_PT",)),
    Cover("real-nautilus-cms.yaml", "cms", "nautilus", name="cms-nautilus", models=("particlenet_AK4_PT",)),
    Cover("cover-monitoring.yaml", "cms", "anvil"),
]
BARE = Cover("cover-bare.yaml", "icecube", "bare")


def keys_of(data: dict[str, Any]) -> set[Key]:
    """Key paths of a values mapping, down to the table's granularity (what the report lists)."""
    found: set[Key] = set()

    def walk(node: Any, path: Key) -> None:
        if path and (table().stops_at(path) or not isinstance(node, dict) or not node):
            found.add(path)
            return
        for k, v in node.items():
            walk(v, (*path, str(k)))

    walk(data, ())
    return found


@pytest.fixture(scope="module")
def tree():  # type: ignore[no-untyped-def]
    return check_tree(FIXTURE)[0]


def run_import(c: Cover, tree: Any) -> ImportResult:
    return import_values(
        VALUES / c.file, tree, experiment=c.experiment, site=c.site, name=c.name, models=c.models
    )


# --- the chart's keys and the table --------------------------------------------------------------


def test_the_chart_schema_accepts_the_chart_defaults() -> None:
    assert list(Draft7Validator(schema()).iter_errors(defaults())) == []


def test_every_key_of_the_chart_has_a_table_entry() -> None:
    missing = sorted(format_key(k) for k in keys_of(defaults()) | DOCUMENTED if table().match(k) is None)
    assert missing == []


def test_the_covering_files_together_set_every_key_of_the_chart() -> None:
    covered: set[Key] = set()
    for c in [*COVERS, BARE]:
        covered |= keys_of(load_file(VALUES / c.file).data)
    wanted = keys_of(defaults()) | DOCUMENTED
    assert sorted(format_key(k) for k in wanted - covered) == []


def _field(schema: dict[str, Any], dotted: str) -> bool:
    """``dotted`` (``models[].name``) names a field of ``schema`` (an inlined schema)."""
    node: Any = schema
    for part in dotted.split("."):
        name, many = part.removesuffix("[]"), part.endswith("[]")
        forms = [node, *node.get("allOf", []), *node.get("anyOf", [])]
        found = [f["properties"][name] for f in forms if name in f.get("properties", {})]
        if not found:
            return False
        node = found[0]
        if many:
            node = node["items"]
    return True


def test_every_table_target_is_a_field_of_our_format() -> None:
    """Each key (and Triton option) lands in a real field of the deployment or the site file."""
    entries = [*table().entries.values(), *table().flags.values()]
    targets = {e.target for e in entries if e.status in ("mapped", "changed")}
    wrong = [
        t
        for t in sorted(targets)
        if not (
            _field(inlined("site"), t.removeprefix("site: "))
            if t.startswith("site: ")
            else _field(inlined("deployment"), t)
        )
    ]
    assert targets and wrong == []


def test_the_target_check_can_fail() -> None:
    assert not _field(inlined("deployment"), "envoy.service.kind")
    assert not _field(inlined("site"), "ingress.allowedAnnotation")


# --- the report --------------------------------------------------------------------------------


@pytest.mark.parametrize("c", COVERS, ids=lambda c: c.file)
def test_the_report_lists_every_key_of_the_file(c: Cover, tree: Any) -> None:
    result = run_import(c, tree)
    reported = {line.key for line in result.report}
    wanted = {format_key(k) for k in keys_of(load_file(VALUES / c.file).data)}
    assert wanted - reported == set()
    assert all(line.line > 0 for line in result.report if not line.key.startswith("(chart default)"))


def test_the_report_explains_what_changed(tree: Any) -> None:
    result = run_import(COVERS[0], tree)
    by_key = {line.key: line for line in result.report}
    assert by_key["envoy.service.ports"].status == "changed"
    assert "admin port 9901 is never exposed" in by_key["envoy.service.ports"].why
    assert "never through a shell" in by_key["triton.command"].why
    assert "touch" in by_key["triton.readinessProbe.command"].why  # the preStop hook that never drained
    assert by_key['grafana["grafana.ini"]["auth.anonymous"].org_role'].status == "unrepresentable"
    assert by_key["envoy.annotations"].status == "mapped"
    assert by_key["envoy.annotations"].target == "envoy.podAnnotations"
    # JWT auth: a LoadBalancer would carry bearer tokens in clear text, so the Service stays ClusterIP.
    assert by_key["envoy.service.type"].status == "changed"
    assert "LoadBalancer not carried" in by_key["envoy.service.type"].why
    # The site sets haproxy.org/server-proto itself; the other annotation needs the site's allowlist.
    assert "haproxy.org/server-proto already set by the site" in by_key["envoy.ingress.annotations"].why
    assert result.fragment["ingress"] == {"allowedAnnotations": ["haproxy.org/timeout-server"]}
    # An external Prometheus only: no Grafana in the namespace, the dashboard goes to the site's.
    assert by_key["grafana.enabled"].status == "changed"
    assert by_key["grafana.enabled"].target == "monitoring.dashboard"
    assert by_key["grafana.ingress.hostName"].status == "unused"
    assert "monitoring" not in result.deployment
    flags = {
        line.key.split(": ", 1)[1]: line for line in result.report if line.key.startswith("triton.args: ")
    }
    assert flags["--allow-gpu-metrics=true"].status == "mapped"
    assert flags["--allow-gpu-metrics=true"].target == "triton.server.flags.allow-gpu-metrics"
    assert result.deployment["triton"]["server"]["flags"] == {"allow-gpu-metrics": True}
    assert flags["--frobnicate=1"].status == "unrepresentable"
    assert flags["--log-verbose=1"].status == "mapped"
    assert by_key["serverLoadMetric"].status == "changed"  # release=~ cannot run here
    assert "namespace" in by_key["serverLoadMetric"].why


def test_an_unknown_key_is_reported_with_a_suggestion(tree: Any) -> None:
    result = run_import(COVERS[1], tree)
    line = next(x for x in result.report if x.key == "keda.minReplicas")
    assert line.status == "unknown"
    assert "did you mean 'minReplicaCount'" in line.why


def test_the_json_report_is_one_object(tree: Any) -> None:
    body = run_import(COVERS[3], tree).as_dict()
    json.dumps(body)
    assert {"deployment", "siteFragment", "report"} <= set(body)


# --- the round trip: import -> validate -> render ----------------------------------------------


def _objects(result: ImportResult, dest: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert validate_import(result, FIXTURE, dest) == []
    t = load_tree(dest)
    p = t.deployment(result.name).at(result.site)
    assert p is not None
    return yaml.safe_load((dest / "experiments" / result.experiment / f"{result.name}.yaml").read_text()), (
        render_site_deployment(p, t.sites[result.site], read_deployment_inputs(p, None))
    )


def _one(objs: list[dict[str, Any]], kind: str, name_part: str = "") -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and name_part in o["metadata"]["name"]]
    assert found, f"no {kind} {name_part}"
    return found[0]


def _named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"no {kind} {name}"
    return found[0]


def _values_of(node: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in ``node`` (the rendered Envoy configuration)."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [
            x for v in node.values() for x in _values_of(v, key)
        ]
    if isinstance(node, list):
        return [x for v in node for x in _values_of(v, key)]
    return []


def _flag_args(flags: dict[str, Any]) -> list[str]:
    """The --name=value arguments triton.server.flags stands for (lists repeat, mappings give settings)."""
    out: list[str] = []
    for name, value in flags.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for setting, v in items:
            for one in v if isinstance(v, list) else [v]:
                text = str(one).lower() if isinstance(one, bool) else str(one)
                out.append(f"--{name}={setting}={text}" if setting else f"--{name}={text}")
    return out


@pytest.mark.parametrize("c", COVERS, ids=lambda c: c.file)
def test_round_trip_carries_each_mapped_setting(c: Cover, tree: Any, tmp_path: Path) -> None:
    result = run_import(c, tree)
    dep, objs = _objects(result, tmp_path)
    name = dep["name"]
    triton = _named(objs, "Deployment", f"{name}-triton")
    pod = triton["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = container["args"]
    assert container["image"] == dep["triton"]["image"]
    server = dep["triton"].get("server", {})
    if "logVerbose" in server:
        assert f"--log-verbose={server['logVerbose']}" in args
    if "exitTimeout" in server:
        assert f"--exit-timeout-secs={int(server['exitTimeout'].rstrip('s'))}" in args
    if "modelControlMode" in server:
        assert f"--model-control-mode={server['modelControlMode']}" in args
    for backend, settings in server.get("backendConfig", {}).items():
        for k, v in settings.items():
            assert f"--backend-config={backend},{k}={v}" in args
    for arg in _flag_args(server.get("flags", {})):
        assert arg in args
    repos = [a.split("=", 1)[1] for a in args if a.startswith("--model-repository=")]
    for path in dep.get("modelRepository", {}).get("cvmfs", []):
        assert path in repos
    for path in dep.get("modelRepository", {}).get("baked", []):
        assert path in repos
    for m in dep["models"]:
        if server.get("modelControlMode") == "explicit":
            assert f"--load-model={m['name']}" in args
    resources = container["resources"]
    assert resources["requests"]["cpu"] == dep["triton"]["resources"]["cpu"]
    assert resources["requests"]["memory"] == dep["triton"]["resources"]["memory"]
    gpu = dep["triton"].get("gpu")
    if gpu and gpu["count"]:
        assert str(resources["limits"]["nvidia.com/gpu"]) == str(gpu["count"])
    elif gpu:  # GPU nodes without a GPU: placed by the class's products, GPUs hidden from Triton
        assert "nvidia.com/gpu" not in resources.get("limits", {})
        assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in container["env"]
        assert "nvidia.com/gpu.product" in json.dumps(pod["spec"]["affinity"]["nodeAffinity"])
    for k, v in dep["triton"].get("nodeSelector", {}).items():
        assert pod["spec"]["nodeSelector"][k] == v
    for t in dep["triton"].get("tolerations", []):
        assert t in pod["spec"]["tolerations"]
    if "affinity" in dep["triton"]:
        for kind, value in dep["triton"]["affinity"].items():
            if kind != "nodeAffinity":  # node terms are merged with the GPU class's (render tests)
                assert pod["spec"]["affinity"][kind] == value
    for k, v in dep["triton"].get("podAnnotations", {}).items():
        assert pod["metadata"]["annotations"][k] == v
    readiness = dep["triton"].get("probes", {}).get("readiness", {})
    if readiness.get("mode") == "kubernetesDefaults":
        probe = container["readinessProbe"]
        assert not {"periodSeconds", "timeoutSeconds", "failureThreshold"} & set(probe)
    elif "period" in readiness:
        assert container["readinessProbe"]["periodSeconds"] == int(readiness["period"].rstrip("s"))
    envoy = dep["envoy"]
    envoy_pod = _named(objs, "Deployment", f"{name}-envoy")["spec"]["template"]
    for k, v in envoy.get("nodeSelector", {}).items():
        assert envoy_pod["spec"]["nodeSelector"][k] == v
    for t in envoy.get("tolerations", []):
        assert t in envoy_pod["spec"]["tolerations"]
    if "affinity" in envoy:
        assert envoy_pod["spec"]["affinity"] == envoy["affinity"]
    for k, v in envoy.get("podAnnotations", {}).items():
        assert envoy_pod["metadata"]["annotations"][k] == v
    service = _named(objs, "Service", f"{name}-envoy")
    assert service["spec"].get("type", "ClusterIP") == envoy.get("service", {}).get("type", "ClusterIP")
    for k, v in envoy.get("service", {}).get("labels", {}).items():
        assert service["metadata"]["labels"][k] == v
    for k, v in envoy.get("service", {}).get("annotations", {}).items():
        assert service["metadata"]["annotations"][k] == v
    envoy_cm = _named(objs, "ConfigMap", f"{name}-envoy")
    envoy_config = yaml.safe_load(envoy_cm["data"]["envoy.yaml"])
    if "lbPolicy" in envoy:
        assert envoy["lbPolicy"] in json.dumps(envoy_config)
    if "ingress" in envoy:
        ing = _named(objs, "Ingress", f"{name}-envoy")
        assert ing["spec"]["rules"][0]["host"] == envoy["ingress"]["host"]
        if "className" in envoy["ingress"]:
            assert ing["spec"]["ingressClassName"] == envoy["ingress"]["className"]
        for k, v in envoy["ingress"].get("annotations", {}).items():
            assert ing["metadata"]["annotations"][k] == v
        if envoy["ingress"].get("tls") == "default":
            assert ing["spec"]["tls"] == [{"hosts": [envoy["ingress"]["host"]]}]
        if "tlsSecret" in envoy["ingress"]:
            assert ing["spec"]["tls"][0]["secretName"] == envoy["ingress"]["tlsSecret"]
    jwt = envoy.get("auth", {}).get("jwt")
    if jwt:
        assert jwt["jwksUri"] in json.dumps(envoy_config)
    gate = envoy.get("admissionGate", {})
    if gate.get("metric") == "query":
        assert quote(gate["query"], safe="") in json.dumps(envoy_config)
    if "tracing" in envoy:
        assert _values_of(envoy_config, "random_sampling") == [
            {"value": envoy["tracing"]["samplingRate"] * 100}
        ]
    stack = dep.get("monitoring", {})
    for part, objects in (
        ("prometheus", ["prometheus"]),
        ("grafana", ["grafana"]),
        ("tracing", ["otel-collector", "tempo"]),
    ):
        for obj in objects:
            made = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{name}-{obj}"]
            assert len(made) == (1 if stack.get(part, {}).get("enabled") else 0), obj
    if "host" in stack.get("grafana", {}):
        grafana = _named(objs, "Ingress", f"{name}-grafana")
        assert grafana["spec"]["rules"][0]["host"] == stack["grafana"]["host"]
    scaling = dep.get("autoscaling")
    if scaling:
        so = _one(objs, "ScaledObject")
        assert so["spec"]["maxReplicaCount"] == scaling["max"]
        assert so["spec"]["minReplicaCount"] == scaling["min"]
        if scaling["metric"] == "query":
            assert scaling["query"] in so["spec"]["triggers"][0]["metadata"]["query"]
    else:
        assert triton["spec"]["replicas"] == dep["replicas"]


def test_round_trip_geddes_keeps_the_real_deployment(tree: Any, tmp_path: Path) -> None:
    """The real Geddes file: its A100 pool by the site's class, 0-10 replicas, the gate on."""
    result = run_import(COVERS[3], tree)
    dep, objs = _objects(result, tmp_path)
    assert dep["triton"]["gpu"] == {"class": "A100", "count": 1}
    assert "nodeSelector" not in dep["triton"]  # cms-af-prod comes from the class
    assert dep["autoscaling"]["min"] == 0 and dep["autoscaling"]["max"] == 10
    assert dep["envoy"]["lbPolicy"] == "ROUND_ROBIN"
    assert "admissionGate" in dep["envoy"]
    assert len(dep["models"]) == 10
    pod = next(o for o in objs if o["kind"] == "Deployment" and "triton" in o["metadata"]["name"])["spec"][
        "template"
    ]["spec"]
    assert pod["nodeSelector"]["cms-af-prod"] == "true"
    assert any(t["key"] == "hub.jupyter.org/dedicated" for t in pod["tolerations"])
    # Next to the existing particlenet: 21 GPUs, and the namespace quota for 16 cores and 16G per
    # replica at 10 replicas (counted as validation counts it), rounded up to whole cores and GiB.
    # The torchgeo image's repository is not among the site's allowed images yet.
    assert result.fragment == {
        "experiments": {"cms": {"gpuQuota": 21, "quota": {"cpu": "202", "memory": "204Gi"}}},
        "images": {"triton": ["nvcr.io/nvidia/tritonserver", "docker.io/fastml/triton-torchgeo"]},
    }
    assert any(
        n.startswith("experiments.cms.quota.cpu: namespace 'cms-sonic' needs") for n in result.fragment_notes
    )


def test_anvil_gpu_products_without_a_class_get_a_fragment(tree: Any) -> None:
    result = run_import(COVERS[4], tree)
    assert result.fragment["gpuClasses"] == {
        "A10-A100-SXM4-80GB": {"products": ["NVIDIA-A10", "NVIDIA-A100-SXM4-80GB"]}
    }
    # GPU nodes without a GPU request (CPU-only Triton on Anvil's GPU nodes): count 0 of that class.
    line = next(x for x in result.report if x.key == "triton.affinity")
    assert line.status == "changed" and line.target == "triton.gpu: {class: A10-A100-SXM4-80GB, count: 0}"
    assert result.deployment["triton"]["gpu"] == {"class": "A10-A100-SXM4-80GB", "count": 0}
    assert "gpuQuota" not in result.fragment.get("experiments", {}).get("cms", {})
    host = next(x for x in result.report if x.key == "envoy.ingress.hostName")
    assert host.status == "changed" and "renamed" in host.why


def _report(result: ImportResult) -> dict[str, Any]:
    return {line.key: line for line in result.report}


def test_the_monitoring_stack_and_the_new_fields_are_imported(tree: Any) -> None:
    """cover-monitoring at Anvil (no site Prometheus): the in-namespace stack answers the gate."""
    result = run_import(COVERS[6], tree)
    dep, by_key = result.deployment, _report(result)
    assert dep["monitoring"] == {
        "prometheus": {"enabled": True},
        "grafana": {"enabled": True, "host": "cms-cms-monitoring-grafana.anvilcloud.rcac.purdue.edu"},
        "tracing": {"enabled": True},
    }
    assert "renamed to cms-cms-monitoring-grafana" in by_key["grafana.ingress.hostName"].why
    # No autoscaling: the file's load metric becomes the gate's own; no site Prometheus is proposed.
    gate = dep["envoy"]["admissionGate"]
    assert gate["metric"] == "query" and gate["threshold"] == 50
    assert by_key["serverLoadMetric"].target == "envoy.admissionGate.query"
    assert result.fragment == {
        "ingress": {"allowedAnnotations": ["nginx.ingress.kubernetes.io/proxy-read-timeout"]}
    }
    assert dep["envoy"]["tracing"] == {"samplingRate": 0.05}
    assert dep["triton"]["probes"]["readiness"] == {"mode": "kubernetesDefaults"}
    # Keys the renderer owns, sandbox-loosening annotations and control-plane tolerations stay out.
    assert dep["triton"]["podAnnotations"] == {"example.org/owner": "cms"}
    assert "app.kubernetes.io/name left out" in by_key["triton.annotations"].why
    assert "seccomp.security.alpha.kubernetes.io/pod left out" in by_key["triton.annotations"].why
    assert dep["triton"]["tolerations"] == [{"key": "example.org/cpu-pool", "operator": "Exists"}]
    assert "control-plane taint left out" in by_key["triton.tolerations"].why
    assert dep["envoy"]["service"] == {
        "type": "NodePort",
        "labels": {"example.org/exposed": "true"},
        "annotations": {"example.org/note": "node-port"},
    }
    ingress = dep["envoy"]["ingress"]
    assert ingress["className"] == "nginx-internal" and ingress["tlsSecret"] == "cms-monitoring-tls"
    assert ingress["annotations"] == {"nginx.ingress.kubernetes.io/proxy-read-timeout": "300"}
    assert dep["triton"]["server"]["flags"] == {
        "allow-cpu-metrics": True,
        "log-warning": True,
        "log-format": "ISO8601",
        "metrics-interval-ms": 1000,
        "model-load-thread-count": 2,
        "rate-limit": "execution_count",
        "rate-limit-resource": ["R1:4", "R2:2"],
        "trace-config": {"rate": 100, "level": ["TIMESTAMPS", "TENSORS"]},
        "metrics-config": {"summary_latencies": True},
    }
    flags = {
        line.key.split(": ", 1)[1]: line for line in result.report if line.key.startswith("triton.args: ")
    }
    assert flags["--trace-level=TENSORS"].status == "changed"
    assert flags["--log-file=/tmp/triton.log"].status == "unrepresentable"
    assert "not an option a deployment sets" in flags["--http-address=0.0.0.0"].why
    assert flags["--allow-gpu-metrics=maybe"].why.endswith("true or false")


def test_ingress_annotations_the_site_does_not_allow_are_proposed(tree: Any) -> None:
    """Nautilus: five of the ten annotations are the site's own; the other five need its allowlist."""
    result = run_import(COVERS[5], tree)
    mine = result.deployment["envoy"]["ingress"]["annotations"]
    site = tree.sites["nautilus"].ingress.annotations
    assert mine and not set(mine) & set(site)
    assert result.fragment["ingress"]["allowedAnnotations"] == list(mine)
    # Without the fragment the site's allowlist refuses them: the proposal is needed.
    bare = ImportResult(**{**result.__dict__, "fragment": {"experiments": result.fragment["experiments"]}})
    assert any("is not allowed on Ingresses" in e.message for e in validate_import(bare, FIXTURE))


def test_tls_without_a_secret_is_the_controllers_default_certificate(tree: Any) -> None:
    """UChicago has no TLS settings: the file's secretless tls entry becomes tls: default."""
    result = run_import(COVERS[2], tree)
    assert result.deployment["envoy"]["ingress"] == {"host": "atlas-nfs.af.uchicago.edu", "tls": "default"}


def _bare_tree(tmp_path: Path) -> Path:
    """A copy of the fixture tree with a site that offers no CVMFS, ingress, Prometheus or GPU class."""
    dest = tmp_path / "repo"
    shutil.copytree(FIXTURE / "experiments", dest / "experiments")
    shutil.copytree(FIXTURE / "gitops" / "sites", dest / "gitops" / "sites")
    (dest / "gitops" / "sites" / "bare.yaml").write_text(
        "name: bare\nargocd: {server: https://bare.example.org:6443}\n"
        'kubernetes: {minVersion: "1.29", maxVersion: "1.33"}\n'
        "experiments:\n  icecube: {namespaces: [icecube-bare], gpuQuota: 1}\n"
    )
    exp = dest / "experiments" / "icecube" / "experiment.yaml"
    data = yaml.safe_load(exp.read_text())
    data["sites"]["bare"] = {"namespaces": ["icecube-bare"]}
    exp.write_text(yaml.safe_dump(data))
    return dest


def test_a_bare_site_gets_every_fragment_it_needs(tmp_path: Path) -> None:
    root = _bare_tree(tmp_path)
    tree = check_tree(root)[0]
    result = run_import(BARE, tree)
    frag = result.fragment
    assert frag["gpuClasses"] == {"GPU": {"nodeSelector": {"gpu-type": "l40"}}}
    assert frag["storage"] == {"cvmfs": {"hostPath": "/cvmfs"}}
    assert frag["ingress"]["className"] == "traefik" and frag["ingress"]["domain"] == "bare.example.org"
    assert frag["prometheus"] == {
        "url": "http://prometheus-server.monitoring.svc.cluster.local:9090",
        "namespace": "monitoring",
    }
    assert frag["experiments"] == {"icecube": {"gpuQuota": 3}}
    assert result.fragment_yaml.startswith("# Site fragment for gitops/sites/bare.yaml")
    assert validate_import(result, root) == []
    # Without the fragment, the site's own rules refuse the deployment: the fragment is needed.
    bare = ImportResult(**{**result.__dict__, "fragment": {}})
    assert validate_import(bare, root) != []


def test_merge_fragment_keeps_the_site_and_adds_the_fragment() -> None:
    site = {
        "storage": {"snapshots": {"claim": "x"}},
        "experiments": {"cms": {"namespaces": ["a"], "gpuQuota": 1}},
    }
    merged = merge_fragment(
        site, {"storage": {"cvmfs": {"storageClass": "cvmfs"}}, "experiments": {"cms": {"gpuQuota": 4}}}
    )
    assert merged == {
        "storage": {"snapshots": {"claim": "x"}, "cvmfs": {"storageClass": "cvmfs"}},
        "experiments": {"cms": {"namespaces": ["a"], "gpuQuota": 4}},
    }


# --- the tritonserver command line ------------------------------------------------------------


def test_the_shell_string_is_split_like_a_shell_would() -> None:
    words = command_line(
        ["/bin/sh", "-c"], ["tritonserver \\\n  --model-repository='/a b' \\\n  --log-verbose 1"]
    )
    assert words == ["tritonserver", "--model-repository=/a b", "--log-verbose", "1"]
    assert [(o.name, o.value) for o in options(words)] == [("model-repository", "/a b"), ("log-verbose", "1")]


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        ("tritonserver --model-repository=/m; rm -rf /", "runs more than tritonserver"),
        ("tritonserver --model-repository=/m && echo hi", "runs more than tritonserver"),
        ("tritonserver --model-repository=$(touch /tmp/sonic-import-pwned)", "expands variables or commands"),
        ("tritonserver --model-repository=`id`", "expands variables or commands"),
        ("tritonserver --model-repository='/m", "cannot be split into words"),
        ("python3 serve.py", "not tritonserver"),
    ],
)
def test_a_shell_string_that_does_more_is_refused_and_never_run(script: str, fragment: str) -> None:
    with pytest.raises(ArgsProblem, match=re.escape(fragment)):
        options(command_line(["/bin/sh", "-c"], [script]))
    assert not Path("/tmp/sonic-import-pwned").exists()


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_writes_a_deployment_that_sonic_validate_accepts(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example_tree)
    out = example_tree / "experiments" / "atlas" / "atlas-pvc.yaml"
    frag = example_tree / "fragment.yaml"
    args = ["import", "supersonic", str(VALUES / "cover-pvc.yaml"), "-e", "atlas", "-s", "uchicago"]
    result = CliRunner().invoke(cli, [*args, "--model", "traccc", "-o", str(out), "--site-out", str(frag)])
    assert result.exit_code == 0, result.output
    assert "keda.minReplicas: unknown key" in result.output
    assert "wrote fragment.yaml" in result.output
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    merged = merge_fragment(yaml.safe_load(site.read_text()), yaml.safe_load(frag.read_text()))
    site.write_text(yaml.safe_dump(merged))
    check = CliRunner().invoke(cli, ["validate"])
    assert check.exit_code == 0, check.output


def test_cli_json_output(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(example_tree)
    args = [
        "import",
        "supersonic",
        str(VALUES / "cover-nfs.yaml"),
        "-e",
        "atlas",
        "-s",
        "uchicago",
        "--format",
        "json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["valid"] is True and body["deployment"]["name"] == "atlas-nfs"
    assert any(line["key"] == "serverLoadMetric" and line["status"] == "mapped" for line in body["report"])


def test_cli_reports_located_errors_for_a_bad_file(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(example_tree)
    bad = example_tree / "bad.yaml"
    bad.write_text("triton:\n  replicas: two\n")
    result = CliRunner().invoke(
        cli, ["import", "supersonic", str(bad), "-e", "cms", "-s", "geddes", "-n", "x"]
    )
    assert result.exit_code == 1
    assert 'bad.yaml:2:13: triton.replicas: "two" is not of type integer' in result.output


# --- the hostile corpus ----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    source: Path
    experiment: str
    site: str
    path: str
    message: str
    line: int
    name: str | None

    @classmethod
    def read(cls, source: Path) -> Case:
        head: dict[str, str] = {}
        for raw in source.read_bytes().splitlines():
            text = raw.decode("latin-1")
            if not text.startswith("# ") or ": " not in text:
                break
            k, v = text[2:].split(": ", 1)
            head[k] = v
        name = head.get("name", "hostile")
        return cls(
            source,
            head["experiment"],
            head["site"],
            head["path"],
            head["message"],
            int(head.get("line", "0")),
            None if name == "-" else name,
        )


CASES = [Case.read(p) for p in sorted(CORPUS.glob("*.yaml"))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.source.stem)
def test_hostile_values_file_is_refused_with_the_promised_error(case: Case, tree: Any) -> None:
    with pytest.raises(ConfigErrors) as info:
        import_values(case.source, tree, experiment=case.experiment, site=case.site, name=case.name)
    hits = [e for e in info.value.errors if e.path == case.path and case.message in e.message]
    assert hits, "\n".join(str(e) for e in info.value.errors)
    if case.line:
        assert hits[0].location.line == case.line


def test_the_corpus_covers_every_kind_of_refusal() -> None:
    assert len(CASES) >= 12
