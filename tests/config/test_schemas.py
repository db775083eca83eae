"""The schemas are a well-formed, documented, closed contract, and the typed models follow them."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from pipelines.config import load_tree
from pipelines.config.model import Experiment, Placement, Site
from pipelines.config.schema import SCHEMA_DIR, inlined, registry, schema_uri

SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.schema.json"))
NAMES = ["experiment", "site", "deployment"]


def _walk(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema (a dict) with its JSON pointer."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}/{i}")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_property_is_described(path: Path) -> None:
    schema = json.loads(path.read_text())
    resolver = registry().resolver(path.as_uri())
    undocumented = []
    for where, node in _walk(schema):
        for key, sub in (
            node.get("properties", {}).items() if isinstance(node.get("properties"), dict) else ()
        ):
            target, res = sub, resolver
            while "description" not in target and "$ref" in target:  # described by the $ref target
                resolved = res.lookup(target["$ref"])
                target, res = resolved.contents, resolved.resolver
            if not str(target.get("description", "")).strip():
                undocumented.append(f"{where}/properties/{key}")
    assert not undocumented


@pytest.mark.parametrize("name", NAMES)
def test_every_object_with_properties_is_closed(name: str) -> None:
    """Checked on the schema as validation applies it ($refs inlined), so a typo never passes."""
    open_objects = [
        where
        for where, node in _walk(inlined(name))
        if isinstance(node.get("properties"), dict) and node.get("additionalProperties") is not False
    ]
    assert not open_objects


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_ref_resolves(path: Path) -> None:
    schema = json.loads(path.read_text())
    resolver = registry().resolver(path.as_uri())
    for _, node in _walk(schema):
        if isinstance(node.get("$ref"), str):
            resolver.lookup(node["$ref"])  # raises if dangling


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_defaults_are_valid_values(path: Path) -> None:
    """A default must pass the schema it is the default of (it is applied without re-validation)."""
    schema = json.loads(path.read_text())
    resolver = registry().resolver(path.as_uri())
    for where, node in _walk(schema):
        if "default" not in node:
            continue
        sub = dict(node)
        default = sub.pop("default")
        validator = Draft202012Validator(sub, registry=registry(), _resolver=resolver)
        errors = [e.message for e in validator.iter_errors(default)]
        assert not errors, f"{path.name}{where[1:]}: default {default!r}: {errors}"


# --- the typed models follow the schema -------------------------------------------------------------

# Fields that exist on one side only, on purpose:
#   deployment.sites is split into one Placement per site (site, namespace come from it);
#   source is where the object was read from.
SCHEMA_ONLY = {"deployment": {"sites"}}
MODEL_ONLY = {"deployment": {"site", "namespace", "source"}, "site": {"source"}, "experiment": {"source"}}
# Objects the typed model keeps as plain data on purpose: the schema checks every known key and
# value, and the renderer only turns them into arguments (render.triton.flag_args).
FREE_FORM = {"triton.server.flags"}
ROOTS: dict[str, type[BaseModel]] = {"deployment": Placement, "site": Site, "experiment": Experiment}


def _unwrap(annotation: Any) -> tuple[str, Any]:
    """(container, inner) for Optional/tuple/dict annotations: ``tuple[Tensor, ...]`` -> ("list", Tensor)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _unwrap(rest[0]) if len(rest) == 1 else ("", annotation)
    if origin is typing.Annotated:
        return _unwrap(args[0])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return "list", args[0]
    if origin is dict:
        return "map", args[1]
    return "", annotation


def _literal_values(annotation: Any) -> set[Any] | None:
    _, inner = _unwrap(annotation)
    if typing.get_origin(inner) is Literal:
        return set(typing.get_args(inner))
    return None


def _drift(schema: dict[str, Any], model: type[BaseModel], where: str, root: str) -> Iterator[str]:
    props: dict[str, Any] = schema.get("properties", {})
    fields = {f.alias or n: f for n, f in model.model_fields.items()}
    schema_only = SCHEMA_ONLY.get(root, set()) if not where else set()
    model_only = MODEL_ONLY.get(root, set()) if not where else set()
    for key in sorted(set(props) - set(fields) - schema_only):
        yield f"{where}{key}: in the schema, not in {model.__name__}"
    for key in sorted(set(fields) - set(props) - model_only):
        yield f"{where}{key}: in {model.__name__}, not in the schema"
    required = set(schema.get("required", []))
    for key in sorted(set(props) & set(fields)):
        sub, field = props[key], fields[key]
        path = f"{where}{key}"
        if key not in required and "default" not in sub and field.is_required():
            yield f"{path}: optional in the schema without a default, required in {model.__name__}"
        container, inner = _unwrap(field.annotation)
        values = _literal_values(field.annotation)
        enum = sub.get("items", {}).get("enum") if container == "list" else sub.get("enum")
        if values is not None and set(enum or []) != values:
            yield f"{path}: enum {enum} in the schema, Literal{sorted(values)} in {model.__name__}"
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            child = {"list": sub.get("items"), "map": sub.get("additionalProperties")}.get(container, sub)
            if not isinstance(child, dict) or "properties" not in child:
                yield f"{path}: {inner.__name__} in the model, but no object with properties in the schema"
                continue
            suffix = {"list": "[].", "map": ".<key>."}.get(container, ".")
            yield from _drift(child, inner, f"{path}{suffix}", root)
        elif "properties" in sub and path not in FREE_FORM:
            yield f"{path}: an object in the schema, but {field.annotation} in {model.__name__}"


@pytest.mark.parametrize("name", NAMES)
def test_typed_models_match_the_schema(name: str) -> None:
    assert list(_drift(inlined(name), ROOTS[name], "", name)) == []


def test_the_drift_check_notices_a_missing_field() -> None:
    class Probe(BaseModel):
        period: float

    schema = inlined("deployment")["properties"]["triton"]["properties"]["probes"]["properties"]["readiness"]
    problems = list(_drift(schema, Probe, "x.", "deployment"))
    assert "x.timeout: in the schema, not in Probe" in problems


# --- defaults ----------------------------------------------------------------------------------------


def test_schema_defaults_reach_the_typed_objects(fixture_root: Path) -> None:
    tree = load_tree(fixture_root)
    minimal = tree.deployment("cms/minimal").at("uchicago")
    assert minimal is not None
    assert minimal.envoy.retries.attempts == 2  # envoy.retries is not written at all
    assert minimal.envoy.retries.on == ("unavailable", "reset", "connect-failure")
    assert minimal.envoy.lb_policy == "LEAST_REQUEST"
    envoy_props = inlined("deployment")["properties"]["envoy"]["properties"]
    assert minimal.envoy.image == envoy_props["image"]["default"]
    assert minimal.triton.image.startswith("nvcr.io/nvidia/tritonserver:")
    assert minimal.triton.probes.readiness.period == 10.0  # "10s" as seconds
    assert minimal.triton.drain.grace_period == 60.0
    assert minimal.models[0].platform == "onnxruntime_onnx"
    assert minimal.models[0].versions == (1,)
    assert minimal.models[0].inputs[0].optional is False
    assert minimal.checks.schedule == "0 */6 * * *"
    assert minimal.checks.models[0].reference is not None
    assert minimal.checks.models[0].reference.rtol == 1e-4
    assert minimal.autoscaling is None  # no default: off unless written
    assert minimal.envoy.auth is None
    # Written values win over defaults, partially written blocks are completed.
    assert minimal.envoy.replicas == 1
    assert minimal.envoy.admission_gate is not None
    assert minimal.envoy.admission_gate.cache_for == 5.0
    icecube = tree.deployment("icecube/cnn-classifier").at("nautilus")
    assert icecube is not None and icecube.autoscaling is not None
    assert icecube.autoscaling.metric == "queueLatency"
    assert icecube.autoscaling.scale_down.stabilization == 300.0
    assert icecube.autoscaling.cooldown_period == 900.0
    site = tree.sites["anvil"]
    assert site.argocd.namespace == "argocd"
    assert site.gpu_classes["A10"].resource == "nvidia.com/gpu"
    assert site.prometheus is None  # Anvil runs none (its deployments bring their own)
    assert site.keda.namespace == "keda"
    geddes = tree.sites["geddes"].prometheus
    assert geddes is not None and geddes.operator is True


def test_validator_works_on_the_inlined_schema() -> None:
    """Inlining is an optimisation: it must not change which documents are valid."""
    by_ref = Draft202012Validator({"$ref": schema_uri("deployment")}, registry=registry())
    flat = Draft202012Validator(inlined("deployment"))
    samples: list[Any] = [
        {"name": "x", "experiment": "cms", "sites": {"a": {"namespace": "n"}}, "models": [{"name": "m"}]},
        {"name": "X", "experiment": "cms", "sites": {}, "models": []},
        {
            "name": "x",
            "experiment": "cms",
            "sites": {"a": {"namespace": "n", "triton": {"gpu": {}}}},
            "models": [{"name": "m"}],
        },
        {
            "name": "x",
            "experiment": "cms",
            "sites": {"a": {"namespace": "n"}},
            "models": [{"name": "m", "inputs": [{"name": "i", "dtype": "FP32", "dims": [0]}]}],
        },
        {
            "name": "x",
            "experiment": "cms",
            "sites": {"a": {"namespace": "n"}},
            "models": [{"name": "m"}],
            "triton": {"drain": {"delay": 30}},
        },
    ]
    for doc in samples:
        assert sorted(e.message for e in by_ref.iter_errors(doc)) == sorted(
            e.message for e in flat.iter_errors(doc)
        )
