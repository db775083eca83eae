"""Can the scheduler place a pod of each GPU class on some node?

The renderer gives a GPU pod the class's ``nodeSelector``, a required node affinity on
``nvidia.com/gpu.product`` (any of the class's products), the class's tolerations and a request
of the class's ``resource``. A node can take it when it carries those labels, allocates that
resource (the NVIDIA device plugin's doing), is not cordoned and has no NoSchedule/NoExecute
taint the class does not tolerate. Nodes are matched here the way kube-scheduler does
(``k8s.io/api/core/v1`` ``Toleration.ToleratesTaint``), so a failure names the step that excludes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.config.model import GpuClass, Site, Toleration
from pipelines.doctor.cluster import Cluster
from pipelines.doctor.result import Finding, failed, passed, skipped
from pipelines.doctor.text import command, listing, site_file

CHECK = "gpu.class"
PRODUCT_LABEL = "nvidia.com/gpu.product"  # set by NVIDIA GPU feature discovery; the renderer's affinity key
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")  # PreferNoSchedule only lowers a node's score


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}{'=' + self.value if self.value else ''}:{self.effect}"


@dataclass(frozen=True)
class NodeFacts:
    """What scheduling a GPU pod depends on, read from one Node."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    allocatable: Mapping[str, str]
    unschedulable: bool

    @classmethod
    def from_object(cls, node: Mapping[str, Any]) -> NodeFacts:
        meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
        return cls(
            name=str(meta.get("name", "")),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            taints=tuple(
                Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
                for t in spec.get("taints") or []
            ),
            allocatable={str(k): str(v) for k, v in (status.get("allocatable") or {}).items()},
            unschedulable=bool(spec.get("unschedulable")),
        )


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' rule: an empty effect matches every effect; Exists with no key matches every taint."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if not toleration.key:
        return toleration.operator == "Exists"
    if toleration.key != taint.key:
        return False
    return toleration.operator == "Exists" or (toleration.value or "") == taint.value


def blocking_taints(node: NodeFacts, tolerations: Sequence[Toleration]) -> list[Taint]:
    """The node's taints that keep a pod with ``tolerations`` off it."""
    return [
        t
        for t in node.taints
        if t.effect in BLOCKING_EFFECTS and not any(tolerates(tol, t) for tol in tolerations)
    ]


def gpu_count(quantity: str | None) -> int:
    """Allocatable extended resources are whole numbers ("4"); anything else counts as none."""
    try:
        return int(quantity or 0)
    except ValueError:
        return 0


def class_selector(cls: GpuClass) -> str:
    """The labels a node of the class carries, as a reader would write them."""
    parts = [f"{k}={v}" for k, v in sorted(cls.node_selector.items())]
    if cls.products:
        parts.append(f"{PRODUCT_LABEL} in ({', '.join(cls.products)})")
    return ", ".join(parts) or "no labels"


def carries_labels(node: NodeFacts, cls: GpuClass) -> bool:
    if any(node.labels.get(k) != v for k, v in cls.node_selector.items()):
        return False
    return not cls.products or node.labels.get(PRODUCT_LABEL) in cls.products


def gpu_class_finding(site: Site, name: str, cls: GpuClass, nodes: Sequence[NodeFacts]) -> Finding:
    """Which nodes take a pod of class ``name``, or the first step that excludes them all (pure)."""
    labelled = [n for n in nodes if carries_labels(n, cls)]
    if not labelled:
        seen = sorted({n.labels[PRODUCT_LABEL] for n in nodes if PRODUCT_LABEL in n.labels})
        return failed(
            CHECK,
            name,
            f"no node carries the labels of GPU class {name} ({class_selector(cls)}); "
            f"GPU products on the nodes: {listing(seen)}",
            "label the GPU nodes ("
            + command(
                "kubectl",
                "label",
                "node",
                "NODE",
                *[f"{k}={v}" for k, v in sorted(cls.node_selector.items())],
            )
            + f"; {PRODUCT_LABEL} comes from NVIDIA GPU feature discovery), or correct gpuClasses.{name} in "
            f"{site_file(site)} and run sonic render",
        )
    with_gpus = [n for n in labelled if gpu_count(n.allocatable.get(cls.resource)) > 0]
    if not with_gpus:
        return failed(
            CHECK,
            name,
            f"nodes {listing([n.name for n in labelled])} carry the labels of {name} but allocate no {cls.resource}",
            f"run the NVIDIA device plugin on them (it advertises {cls.resource}), or correct "
            f"gpuClasses.{name}.resource in {site_file(site)}",
        )
    schedulable = [n for n in with_gpus if not n.unschedulable]
    if not schedulable:
        return failed(
            CHECK,
            name,
            f"every node of {name} is cordoned ({listing([n.name for n in with_gpus])})",
            command("kubectl", "uncordon", with_gpus[0].name),
        )
    usable = [n for n in schedulable if not blocking_taints(n, cls.tolerations)]
    if not usable:
        node = schedulable[0]
        taints = blocking_taints(node, cls.tolerations)
        return failed(
            CHECK,
            name,
            f"nodes of {name} are tainted and the class does not tolerate it: {node.name} has "
            f"{listing([str(t) for t in taints])}",
            f"add the toleration to gpuClasses.{name}.tolerations in {site_file(site)} and run sonic render, "
            f"or remove the taint ({command('kubectl', 'taint', 'node', node.name, str(taints[0]) + '-')})",
        )
    total = sum(gpu_count(n.allocatable.get(cls.resource)) for n in usable)
    return passed(
        CHECK,
        name,
        f"{len(usable)} node(s) take its pods ({listing([n.name for n in usable][:4])}"
        f"{' ...' if len(usable) > 4 else ''}): {total} {cls.resource} allocatable",
    )


def check_gpu_classes(cluster: Cluster, site: Site) -> list[Finding]:
    if not site.gpu_classes:
        return [skipped(CHECK, "-", "the site declares no GPU classes")]
    nodes = [NodeFacts.from_object(n) for n in cluster.list("/api/v1/nodes")]
    return [gpu_class_finding(site, name, cls, nodes) for name, cls in sorted(site.gpu_classes.items())]
