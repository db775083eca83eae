"""Every rendered object is valid: core kinds by kubernetes-validate --strict at the oldest and
newest Kubernetes version any site declares; custom resources by their CRD schema; every
rendered envoy.yaml by the real Envoy.

Version mapping: a site's ``"1.28"`` is kubernetes-validate's ``1.28.0`` schema set (it ships
1.25-1.37 and picks the newest schema not newer than the version asked for). A version newer
than the newest it ships is validated against the newest (and says so); one older than the
oldest cannot be validated and is skipped with that reason.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator

from tests.render.conftest import envoy_validate
from tests.render.support import CRD_FILES, CRDS, all_objects, crd_schema, tree

EARLIEST_SHIPPED = (1, 25)


def _versions() -> list[str]:
    sites = tree().sites.values()
    lo = min(tuple(int(x) for x in s.kubernetes.min_version.split(".")) for s in sites)
    hi = max(tuple(int(x) for x in s.kubernetes.max_version.split(".")) for s in sites)
    latest = tuple(int(x) for x in kubernetes_validate.latest_version().split(".")[:2])
    return [f"{v[0]}.{v[1]}.0" for v in (lo, min(hi, latest))]


def _core(obj: dict[str, Any]) -> bool:
    api = obj["apiVersion"]
    group = api.split("/")[0] if "/" in api else ""
    return group == "" or group.endswith(".k8s.io") or "." not in group


def test_declared_versions_are_validatable() -> None:
    lo, hi = _versions()
    assert tuple(int(x) for x in lo.split(".")[:2]) >= EARLIEST_SHIPPED
    assert (lo, hi) == ("1.28.0", "1.34.0")  # the example sites: anvil 1.28 ... nautilus 1.34


@pytest.mark.parametrize("version", _versions())
def test_core_objects_pass_kubernetes_validate_strict(version: str) -> None:
    checked = 0
    for ident, obj in all_objects():
        if not _core(obj):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{ident}: {obj['kind']} {obj['metadata']['name']} invalid at {version}: {exc}")
        checked += 1
    assert checked > 50


def _argocd_objects() -> list[tuple[str, dict[str, Any]]]:
    from pipelines.config.repository import DEFAULT
    from pipelines.render.argocd import render_argocd_site

    t = tree()
    return [
        (f"argocd/{name}", obj)
        for name, site in sorted(t.sites.items())
        for obj in render_argocd_site(
            site, dict(t.experiments), dict(t.sites), t.placements_at(name), DEFAULT
        )
    ]


@functools.cache
def _validator(kind: str, version: str) -> Draft7Validator:
    return Draft7Validator(crd_schema(kind, version))


@pytest.mark.skipif(not CRDS.is_dir(), reason=f"the shared CRDs are not at {CRDS}")
def test_custom_resources_match_their_crd() -> None:
    seen: set[str] = set()
    for ident, obj in all_objects() + _argocd_objects():
        if _core(obj):
            continue
        kind = obj["kind"]
        assert kind in CRD_FILES, f"{ident}: no CRD known for {kind}"
        errors = sorted(_validator(kind, obj["apiVersion"].split("/")[1]).iter_errors(obj), key=str)
        assert not errors, f"{ident}: {kind} {obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
        seen.add(kind)
    assert seen == {
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceMonitor",
        "PrometheusRule",
        "AppProject",
        "ApplicationSet",
    }


@pytest.mark.skipif(not CRDS.is_dir(), reason=f"the shared CRDs are not at {CRDS}")
def test_crd_validation_rejects_a_broken_object() -> None:
    """The schema check can fail: a ScaledObject with a string replica count is refused."""
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCount": "zero", "triggers": []},
    }
    assert list(_validator("ScaledObject", "v1alpha1").iter_errors(bad))


def test_every_rendered_envoy_yaml_passes_envoy_validate(envoy_binary: Path, tmp_path: Path) -> None:
    configs = [
        (ident, obj["data"]["envoy.yaml"])
        for ident, obj in all_objects()
        if obj["kind"] == "ConfigMap" and "envoy.yaml" in obj.get("data", {})
    ]
    assert configs
    for i, (ident, text) in enumerate(configs):
        yaml.safe_load(text)
        path = tmp_path / f"envoy-{i}.yaml"
        path.write_text(text)
        result = envoy_validate(envoy_binary, path)
        assert result.returncode == 0, f"{ident}: {result.stdout}{result.stderr}"
