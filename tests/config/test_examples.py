"""The live example tree is valid and mirrors the real SuperSONIC deployments (tests about the
examples themselves); per-site overrides merge (on the frozen fixture tree, like every unit test).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.config import load_tree
from pipelines.config import schema as schemas
from pipelines.config.loader import load_file
from pipelines.config.tree import discover
from tests.config.support import SONIC

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(discover(ROOT).items())


@pytest.mark.parametrize(("path", "kind"), FILES, ids=[str(p.relative_to(ROOT)) for p, _ in FILES])
def test_example_file_is_schema_valid_and_names_its_schema(path: Path, kind: str) -> None:
    assert schemas.validate(load_file(path), kind) == []  # type: ignore[arg-type]
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    schema_file = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert schema_file.resolve() == (schemas.SCHEMA_DIR / f"{kind}.schema.json").resolve()


def test_whole_example_tree_is_valid(repo_root: Path) -> None:
    tree = load_tree(repo_root)
    assert {"geddes", "anvil", "nautilus", "uchicago"} <= set(tree.sites)
    assert {"cms", "atlas", "icecube"} <= set(tree.experiments)
    placements = tree.placements_at()
    assert len(placements) >= 7
    assert all(p.source.is_file() for p in placements)


def test_sonic_validate_exits_0_on_the_examples(repo_root: Path) -> None:
    proc = subprocess.run(
        [*SONIC, "validate", "experiments", "gitops/sites"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok: ")


def test_examples_mirror_the_real_deployments(repo_root: Path) -> None:
    tree = load_tree(repo_root)
    cms = [d for d in tree.deployments if d.experiment == "cms"]
    assert len(cms) >= 2 and len({p.site for d in cms for p in d.placements}) >= 2
    geddes = tree.deployment("cms/particlenet").at("geddes")
    assert geddes is not None and geddes.autoscaling is not None
    assert (geddes.autoscaling.min, geddes.autoscaling.max, geddes.autoscaling.threshold) == (1, 11, 20)
    assert len(geddes.model_repository.cvmfs) == 3
    assert geddes.envoy.admission_gate is not None and geddes.envoy.admission_gate.enabled
    assert geddes.envoy.tracing is not None and geddes.envoy.tracing.sampling_rate == 0.01
    traccc = tree.deployment("atlas/traccc").placements[0]
    assert traccc.model_repository.baked and traccc.replicas == 1 and traccc.triton.server.exit_on_error
    icecube = tree.deployment("icecube/cnn-classifier").placements[0]
    assert icecube.envoy.auth is not None and icecube.envoy.auth.jwt is not None
    assert len(icecube.envoy.auth.jwt.audiences) >= 2
    assert icecube.autoscaling is not None and icecube.autoscaling.min == 0
    assert icecube.triton.probes.startup_timeout >= 240
    minimal = tree.deployment("cms/minimal").placements[0]
    assert minimal.triton.gpu is None and all(m.artifact for m in minimal.models)


def test_per_site_overrides_merge_over_the_deployment(fixture_root: Path) -> None:
    """particlenet: autoscaled at Geddes; fixed 5 replicas, A10, zone ucsd and its own Envoy settings at Nautilus."""
    d = load_tree(fixture_root).deployment("cms/particlenet")
    geddes, nautilus = d.at("geddes"), d.at("nautilus")
    assert geddes is not None and nautilus is not None
    assert (geddes.namespace, nautilus.namespace) == ("cms-sonic", "cms")
    assert nautilus.autoscaling is None and nautilus.replicas == 5 and nautilus.max_replicas == 5
    assert geddes.max_replicas == 11
    assert geddes.triton.gpu is not None and nautilus.triton.gpu is not None
    assert (geddes.triton.gpu.gpu_class, nautilus.triton.gpu.gpu_class) == ("A100", "A10")
    assert nautilus.triton.gpu.count == 1  # class overridden, count kept from the deployment
    assert nautilus.triton.node_selector == {"topology.kubernetes.io/zone": "ucsd"}
    assert nautilus.triton.resources == geddes.triton.resources  # not overridden: inherited
    assert (geddes.envoy.lb_policy, nautilus.envoy.lb_policy) == ("ROUND_ROBIN", "LEAST_REQUEST")
    assert (geddes.envoy.timeouts.route, nautilus.envoy.timeouts.route) == (0.0, 5.0)
    assert nautilus.envoy.timeouts.connect == geddes.envoy.timeouts.connect == 2.0  # sibling default kept
    assert geddes.envoy.ingress is not None and nautilus.envoy.ingress is not None
    assert geddes.envoy.ingress.host.endswith(".geddes.rcac.purdue.edu")
    assert nautilus.envoy.ingress.host.endswith(".nrp-nautilus.io")
    assert nautilus.envoy.rate_limit == geddes.envoy.rate_limit  # deployment-wide


def test_typed_objects_are_immutable(fixture_root: Path) -> None:
    p = load_tree(fixture_root).deployment("cms/minimal").placements[0]
    with pytest.raises(Exception, match="frozen"):
        p.replicas = 3  # type: ignore[misc]
