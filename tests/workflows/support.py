"""Shared by the pipeline tests: the rendered objects, the CRD schemas, the CLI's command tree."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import yaml
from jsonschema import Draft7Validator

from pipelines.config import Tree, load_tree
from pipelines.workflows.files import render
from pipelines.workflows.settings import PipelineSettings, load_settings
from tests.conftest import FIXTURE, ROOT, SHARED

CRDS = SHARED / "crds"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
WORKFLOW_CRDS = {"WorkflowTemplate": "workflowtemplates", "CronWorkflow": "cronworkflows"}
EVENT_KINDS = ("Sensor", "EventSource")


@functools.cache
def tree() -> Tree:
    """The frozen fixture tree (tests/fixtures/tree), not the live examples."""
    return load_tree(FIXTURE)


@functools.cache
def settings() -> PipelineSettings:
    """The fixture tree's repository settings."""
    return load_settings(FIXTURE)


@functools.cache
def live_settings() -> PipelineSettings:
    """The live gitops/repository.yaml, for tests about the repository itself (Dockerfile, CI)."""
    return load_settings(ROOT)


@functools.cache
def files() -> dict[str, str]:
    """A fresh render of the fixture tree's gitops/workflows/ (file name -> text)."""
    return render(tree(), settings())


def objects() -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, object) for every rendered object."""
    for name, text in files().items():
        for doc in yaml.load_all(text, Loader=_LOADER):
            yield name, doc


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for _, o in objects() if o["kind"] == kind]


def strict(schema: Any) -> Any:
    """The schema with unknown fields forbidden wherever it lists properties.

    The API server prunes unknown fields silently (and hera's models drop them), so a typo would
    otherwise vanish on the way to the cluster instead of failing here.
    """
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.cache
def validator(kind: str) -> Draft7Validator:
    """Draft 7 validator for a kind: Argo Workflows CRD openAPIV3Schema, or Argo Events' JSON Schema."""
    if kind in WORKFLOW_CRDS:
        with (CRDS / "argoproj.io" / f"{WORKFLOW_CRDS[kind]}.yaml").open() as fh:
            crd = yaml.load(fh, Loader=_LOADER)
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
        return Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    schema = json.loads((CRDS / "_supplementary" / "argo-events" / "jsonschema.json").read_text())
    return Draft7Validator(strict({**schema, "$ref": f"#/definitions/io.argoproj.events.v1alpha1.{kind}"}))


def errors(obj: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator(obj["kind"]).iter_errors(obj)]


# --- templates and steps ---------------------------------------------------------------------


def workflow_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["workflowSpec"] if obj["kind"] == "CronWorkflow" else obj["spec"]
    return spec


def container_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """(``<namespace>/<object>/<template>``, template) for every template that runs a pod."""
    for _, obj in objects():
        if obj["kind"] not in WORKFLOW_CRDS:
            continue
        for t in workflow_spec(obj)["templates"]:
            if "container" in t or "containerSet" in t:
                yield f"{obj['metadata']['namespace']}/{obj['metadata']['name']}/{t['name']}", t


def containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(ident, template, container) for every container of every pod template.

    A container template's ident is its template's; a container set's containers are
    ``<template ident>/<container name>``.
    """
    for ident, t in container_templates():
        if "container" in t:
            yield ident, t, t["container"]
        else:
            for c in t["containerSet"]["containers"]:
                yield f"{ident}/{c['name']}", t, c


def main_container(t: dict[str, Any]) -> dict[str, Any]:
    """The container whose command is the step's: the only one, or a container set's ``main``."""
    if "container" in t:
        container: dict[str, Any] = t["container"]
        return container
    (main,) = [c for c in t["containerSet"]["containers"] if c["name"] == "main"]
    return main


# --- the CLI ---------------------------------------------------------------------------------


def resolve(group: click.Group, args: Sequence[str]) -> tuple[click.Command, list[str], list[str]]:
    """The (sub)command ``args`` name, the words naming it, and the arguments left for it."""
    cmd: click.Command = group
    path: list[str] = []
    rest = list(args)
    while isinstance(cmd, click.Group):
        sub = cmd.get_command(click.Context(cmd), rest[0]) if rest else None
        if sub is None:
            raise LookupError(f"`sonic {' '.join([*path, *rest[:1]])}` is not a command")
        path.append(rest.pop(0))
        cmd = sub
    return cmd, path, rest


def parse(cmd: click.Command, args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Parse with click's own parser: unknown options raise UsageError.

    Returns (option and argument values by name, words left over that no parameter took).
    """
    ctx = click.Context(cmd, info_name=cmd.name)
    values, extra, _ = cmd.make_parser(ctx).parse_args(list(args))
    return values, extra


def missing_arguments(cmd: click.Command, values: dict[str, Any]) -> list[str]:
    """Required positional arguments the parse did not fill."""
    return [
        p.name or "?"
        for p in cmd.params
        if isinstance(p, click.Argument)
        and p.required
        and not isinstance(values.get(p.name or ""), str | tuple | list)
    ]


def repo_file(rel: str) -> Path:
    """A file of the repository itself (code, CI, docs), not of the fixture tree."""
    return ROOT / rel
