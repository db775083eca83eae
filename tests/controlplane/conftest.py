"""The `controlplane` tier: one real Kubernetes control plane for the whole session.

Started once (etcd, kube-apiserver, controller-manager, scheduler, kwok, and the KEDA operator and
Argo Workflows controller when built), with fake nodes for every GPU class of every site, and
stopped by PID at the end. Binaries come from ``scripts/controlplane-tools.sh``; when they are
missing the tests skip with that command (a failure in CI, see tests/conftest.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.config.checked import load_tree
from pipelines.config.model import Site
from tests.support.controlplane import (
    ControlPlane,
    ControlPlaneUnavailable,
    apply_object,
    create_node,
    ensure_namespace,
    fake_node,
    start_control_plane,
    stop_control_plane,
    tool_bindir,
    wait_nodes_ready,
)

ROOT = Path(__file__).resolve().parents[2]
CPU_NODES = ("cpu-a", "cpu-b")  # where Envoy, checks and pipeline steps run


NODES_PER_PRODUCT = 2
GPUS_PER_NODE = 8


def gpu_nodes(site: Site, extra_labels: dict[str, str]) -> list[dict[str, object]]:
    """Two nodes per GPU product of each class: its labels, its class's taints, 8 GPUs each.

    What the NVIDIA GPU operator's feature discovery and device plugin report on a real node.
    ``extra_labels`` are the other node labels the site's deployments select (a zone, say):
    a real site has nodes carrying them (``sonic site doctor`` checks that).
    """
    nodes = []
    for cls_name, cls in sorted(site.gpu_classes.items()):
        taints = [
            {
                k: v
                for k, v in {"key": t.key, "value": t.value, "effect": t.effect or "NoSchedule"}.items()
                if v
            }
            for t in cls.tolerations
        ]
        for i, product in enumerate(cls.products or ("generic",)):
            labels = {**extra_labels, **cls.node_selector}
            if cls.products:
                labels["nvidia.com/gpu.product"] = product
            for n in range(NODES_PER_PRODUCT):
                name = f"{site.name}-{cls_name}-{i}-{n}".lower()
                nodes.append(fake_node(name, labels, taints, {cls.resource: GPUS_PER_NODE}))
    return nodes


def selected_labels(site: str) -> dict[str, str]:
    """Node labels the site's rendered Deployments select besides their GPU class's."""
    labels: dict[str, str] = {}
    for path in sorted(ROOT.glob(f"gitops/rendered/{site}/*/*/deployment.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                labels.update(doc["spec"]["template"]["spec"].get("nodeSelector") or {})
    return labels


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/controlplane/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        bindir = tool_bindir()
    except Exception as exc:
        pytest.skip(f"control-plane tools unavailable ({exc}); run scripts/controlplane-tools.sh")
    workdir = Path(tempfile.mkdtemp(prefix="sonic-controlplane-"))
    try:
        cp = start_control_plane(workdir, bindir)
    except ControlPlaneUnavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(str(exc))
    try:
        tree = load_tree(ROOT)
        names = []
        for node in [fake_node(n, {}) for n in CPU_NODES] + [
            n for site in tree.sites.values() for n in gpu_nodes(site, selected_labels(site.name))
        ]:
            create_node(cp, node)
            names.append(node["metadata"]["name"])  # type: ignore[index]
        wait_nodes_ready(cp, names)
        yield cp
    finally:
        stop_control_plane(cp)


def needs_controller(cp: ControlPlane, name: str) -> None:
    """Skip (a failure in CI) when an optional controller was not built or did not start."""
    if name not in cp.controllers:
        pytest.skip(f"{name} controller not running; build it with scripts/controlplane-tools.sh")


@pytest.fixture(scope="session")
def rbac(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with every object of gitops/workflows applied (accounts, Roles, bindings)."""
    for path in sorted((ROOT / "gitops" / "workflows").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for ns in sorted({d["metadata"].get("namespace") for d in docs} - {None}):
            ensure_namespace(control_plane, ns)
        ensure_namespace(control_plane, "argocd")
        for doc in sorted(docs, key=lambda d: {"Namespace": 0, "ServiceAccount": 1}.get(d["kind"], 2)):
            status, body = apply_object(control_plane, doc)
            assert status in (200, 201), f"{path.name}: {status} {body}"
    return control_plane
