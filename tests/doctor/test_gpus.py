"""GPU classes against nodes: the scheduler's label, resource, cordon and taint rules."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.config.model import Toleration
from pipelines.doctor.gpus import NodeFacts, Taint, blocking_taints, gpu_class_finding, gpu_count, tolerates
from tests.doctor.support import make_site

SITE = make_site()
A100 = SITE.gpu_classes["A100"]


def node(
    name: str = "gpu-1",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    gpus: str | None = "4",
    unschedulable: bool = False,
) -> NodeFacts:
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "labels": labels
            if labels is not None
            else {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        },
        "spec": {
            "taints": taints
            if taints is not None
            else [{"key": "dedicated", "value": "sonic", "effect": "NoSchedule"}]
        },
        "status": {"allocatable": {"cpu": "64", **({"nvidia.com/gpu": gpus} if gpus is not None else {})}},
    }
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return NodeFacts.from_object(obj)


def tol(
    key: str = "", operator: str = "Equal", value: str | None = None, effect: str | None = None
) -> Toleration:
    return Toleration.model_validate({"key": key, "operator": operator, "value": value, "effect": effect})


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (tol("dedicated", "Equal", "sonic", "NoSchedule"), Taint("dedicated", "sonic", "NoSchedule"), True),
        (tol("dedicated", "Equal", "other", "NoSchedule"), Taint("dedicated", "sonic", "NoSchedule"), False),
        (
            tol("dedicated", "Exists"),
            Taint("dedicated", "sonic", "NoExecute"),
            True,
        ),  # no effect: every effect
        (tol("dedicated", "Exists", effect="NoSchedule"), Taint("dedicated", "x", "NoExecute"), False),
        (tol("", "Exists"), Taint("anything", "x", "NoSchedule"), True),  # empty key + Exists: every taint
        (
            tol("nvidia.com/gpu", "Exists", effect="NoSchedule"),
            Taint("nvidia.com/gpu", "", "NoSchedule"),
            True,
        ),
        (tol("gpu", "Equal", None), Taint("gpu", "", "NoSchedule"), True),  # empty value equals no value
    ],
)
def test_tolerates_as_kubernetes_does(toleration: Toleration, taint: Taint, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


def test_prefer_no_schedule_never_blocks() -> None:
    n = node(taints=[{"key": "busy", "effect": "PreferNoSchedule"}])
    assert blocking_taints(n, []) == []


def test_gpu_count_reads_whole_numbers_only() -> None:
    assert gpu_count("4") == 4 and gpu_count(None) == 0 and gpu_count("1k") == 0


def test_a_labelled_tolerated_node_with_gpus_passes() -> None:
    f = gpu_class_finding(SITE, "A100", A100, [node(), node("cpu-1", labels={}, gpus=None, taints=[])])
    assert f.status == "pass" and "1 node(s) take its pods (gpu-1): 4 nvidia.com/gpu allocatable" in f.message


def test_no_node_with_the_labels() -> None:
    other = node(labels={"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-L4"})
    f = gpu_class_finding(SITE, "A100", A100, [other])
    assert f.failed
    assert (
        "no node carries the labels of GPU class A100 (pool=gpu, nvidia.com/gpu.product in (NVIDIA-A100-80GB-PCIe, NVIDIA-A100-SXM4-80GB))"
        in f.message
    )
    assert "GPU products on the nodes: NVIDIA-L4" in f.message
    assert "kubectl label node NODE pool=gpu" in f.fix and "gitops/sites/testsite.yaml" in f.fix


def test_labels_but_no_device_plugin() -> None:
    f = gpu_class_finding(SITE, "A100", A100, [node(gpus=None), node("gpu-2", gpus="0")])
    assert f.failed and "carry the labels of A100 but allocate no nvidia.com/gpu" in f.message
    assert "NVIDIA device plugin" in f.fix


def test_every_node_cordoned() -> None:
    f = gpu_class_finding(SITE, "A100", A100, [node(unschedulable=True)])
    assert f.failed and "cordoned" in f.message and f.fix == "kubectl uncordon gpu-1"


def test_a_taint_the_class_does_not_tolerate() -> None:
    n = node(
        taints=[
            {"key": "dedicated", "value": "sonic", "effect": "NoSchedule"},
            {"key": "maintenance", "effect": "NoExecute"},
        ]
    )
    f = gpu_class_finding(SITE, "A100", A100, [n])
    assert f.failed and "gpu-1 has maintenance:NoExecute" in f.message and "dedicated" not in f.message
    assert "kubectl taint node gpu-1 maintenance:NoExecute-" in f.fix


def test_a_class_without_products_or_selector_matches_by_resource() -> None:
    site = make_site(gpuClasses={"any": {"products": []}})
    f = gpu_class_finding(site, "any", site.gpu_classes["any"], [node(labels={}, taints=[])])
    assert f.status == "pass"
