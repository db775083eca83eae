"""JSON-Schema validation of parsed documents, with errors people can act on, and schema defaults.

The schemas in ``schemas/`` are the public contract (editors use them too). Here they are
compiled once, every violation is reported at the line that caused it, and jsonschema's
generic messages are rewritten where a better one helps (unknown field -> did you mean ...).
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipelines.config.errors import ConfigError, format_path
from pipelines.config.loader import Document

SchemaName = Literal["deployment", "site", "experiment"]
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_uri(name: str) -> str:
    return (SCHEMA_DIR / f"{name}.schema.json").as_uri()


@cache
def registry() -> Registry:
    """All schemas under their file URIs, so relative ``$ref``s between them resolve offline."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.as_uri(), Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@cache
def load_schema(name: str) -> dict[str, Any]:
    result: dict[str, Any] = registry()[schema_uri(name)].contents
    return result


@cache
def validator(name: SchemaName) -> Draft202012Validator:
    schema = {"$ref": schema_uri(name)}
    return Draft202012Validator(schema, registry=registry())


def validate(doc: Document, name: SchemaName) -> list[ConfigError]:
    """Every schema violation in ``doc``, each located and explained."""
    return [_explain(doc, err) for err in _leaves(validator(name).iter_errors(doc.data))]


def _leaves(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """Replace oneOf/anyOf umbrella errors by the most relevant error inside them."""
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.context:
            yield jsonschema.exceptions.best_match(err.context)
        else:
            yield err


def _described(schema: Any) -> str:
    if isinstance(schema, dict):
        desc = schema.get("description")
        if isinstance(desc, str):
            return desc.rstrip(".")
    return ""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _explain(doc: Document, err: ValidationError) -> ConfigError:
    path = tuple(err.absolute_path)
    inst = err.instance
    kind = err.validator
    if kind == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in inst if k not in allowed)
        key = extra[0] if extra else ""
        hint = _suggest(key, allowed)
        valid = f"; valid fields: {', '.join(allowed)}" if allowed else ""
        return doc.error((*path, key), f"unknown field {key!r}{hint}{valid}", key=True)
    if kind == "required":
        missing = str(err.validator_value[0]) if len(err.validator_value) == 1 else ""
        for name in err.validator_value:
            if name not in inst:
                missing = name
                break
        what = _described(err.schema.get("properties", {}).get(missing, {}))
        return doc.error(
            (*path, missing), f"required field {missing!r} is missing" + (f" ({what})" if what else "")
        )
    if kind == "enum":
        options = [str(v) for v in err.validator_value]
        hint = _suggest(str(inst), options) if isinstance(inst, str) else ""
        return doc.error(path, f"{inst!r} is not one of: {', '.join(options)}{hint}")
    if kind == "type":
        want = err.validator_value
        wants = " or ".join(want) if isinstance(want, list) else want
        hint = ""
        if isinstance(inst, float | int) and not isinstance(inst, bool) and "string" in str(want):
            hint = f' (write it in quotes: "{doc.raw.get(path, inst)}")'
        return doc.error(path, f"expected {wants}, found {_type_name(inst)} {inst!r}{hint}")
    if kind == "pattern":
        what = _described(err.schema)
        return doc.error(
            path,
            f"{inst!r} is not valid"
            + (f": expected {what[0].lower()}{what[1:]}" if what else f" (pattern {err.validator_value})"),
        )
    if kind == "propertyNames":
        bad = err.instance if isinstance(err.instance, str) else ""
        what = _described(err.validator_value) or "a valid name"
        return doc.error(
            (*path, bad), f"{bad!r} is not a valid key here: expected {what[0].lower()}{what[1:]}", key=True
        )
    if kind == "not":
        return doc.error(path, f"{inst!r} is not allowed: {_described(err.schema)}")
    if kind in ("oneOf", "anyOf"):
        return doc.error(path, "must match exactly one of the allowed forms: " + _described(err.schema))
    if kind == "uniqueItems":
        return doc.error(path, "list items must be unique")
    if kind in ("minItems", "minProperties"):
        return doc.error(path, f"must not be empty (at least {err.validator_value})")
    return doc.error(path, err.message)


# --- defaults -------------------------------------------------------------------------------------


def apply_defaults(data: dict[str, Any], name: SchemaName) -> dict[str, Any]:
    """A deep copy of schema-valid ``data`` with every schema ``default`` filled in.

    A property that is absent and has a default gets it; then its own properties are filled in
    turn, so ``envoy: {}`` by default becomes a complete Envoy block.
    """
    out = copy.deepcopy(data)
    resolver = registry().resolver(schema_uri(name))
    _fill(load_schema(name), out, resolver)
    return out


def _resolve(schema: dict[str, Any], resolver: Any) -> tuple[dict[str, Any], Any]:
    while "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        schema, resolver = resolved.contents, resolved.resolver
    return schema, resolver


def _default(schema: dict[str, Any], resolver: Any) -> tuple[bool, Any]:
    while True:
        if "default" in schema:
            return True, schema["default"]
        if "$ref" not in schema:
            return False, None
        resolved = resolver.lookup(schema["$ref"])
        schema, resolver = resolved.contents, resolved.resolver


def _fill(schema: dict[str, Any], value: Any, resolver: Any) -> None:
    schema, resolver = _resolve(schema, resolver)
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value:
                present, default = _default(sub, resolver)
                if not present:
                    continue
                value[key] = copy.deepcopy(default)
            _fill(sub, value[key], resolver)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    _fill(extra, item, resolver)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(schema["items"], item, resolver)


__all__ = ["SCHEMA_DIR", "SchemaName", "apply_defaults", "format_path", "load_schema", "registry", "validate"]
