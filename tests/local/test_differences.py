"""What `sonic local up` says about how the local stack differs from the deployment at its site."""

from __future__ import annotations

from pipelines.cli.local import local_differences
from pipelines.config import load_tree
from pipelines.local.stack import default_replicas
from tests.conftest import FIXTURE


def placement(name: str, site: str):  # type: ignore[no-untyped-def]
    tree = load_tree(FIXTURE)
    p = tree.deployment(name).at(site)
    assert p is not None
    return p


def test_a_gpu_deployment_autoscaled_at_its_site_runs_at_min_on_cpu() -> None:
    p = placement("cms/particlenet", "geddes")  # 1 x A100 per replica, KEDA 1..11
    assert default_replicas(p) == 1
    gpu, scaling = local_differences(p, None)
    assert gpu.startswith("at geddes each replica gets 1 A100 GPU(s); here Triton runs on this machine's CPU")
    assert scaling == (
        "at geddes KEDA scales 1..11 replicas on queueLatency; here nothing scales: 1 replica(s), "
        "autoscaling.min (at least one; --replicas N to change)"
    )
    assert len(local_differences(p, 3)) == 1  # --replicas given: no scaling note


def test_a_cpu_deployment_with_fixed_replicas_runs_as_declared() -> None:
    p = placement("cms/minimal", "uchicago")
    assert local_differences(p, None) == []
    assert default_replicas(p) == p.replicas == 2
