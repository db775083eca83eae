"""JSON-Schema validation of parsed documents, with errors people can act on, and schema defaults.

The schemas in ``schemas/`` are the public contract (editors use them too). Here they are
compiled once, every violation is reported at the line that caused it, and jsonschema's
generic messages are rewritten where a better one helps (unknown field -> did you mean ...).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipelines.config.errors import ConfigError, JsonPath, format_path
from pipelines.config.loader import Document
from pipelines.config.model import parse_duration

SchemaName = Literal["deployment", "site", "experiment"]
# pipelines/schemas links to the repository's schemas/, so installed wheels carry the same files.
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


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


# Where an inlined ``$ref`` carried its own description, the target's (which describes the value's
# form, e.g. "A duration such as 30s") is kept under this key for error messages. JSON Schema
# ignores unknown keywords, so validation is unaffected.
VALUE_DESCRIPTION = "x-value-description"
_ANNOTATIONS = frozenset({"description", "default", "title", "$comment", "examples"})
# Bounds of a duration string (our own keywords, see DURATION_BOUNDS below): they merge into the
# ``$ref``'d duration like annotations, so the field keeps the shared type's pattern.
_MERGED = _ANNOTATIONS | {"minDuration", "maxDuration"}


@cache
def inlined(name: SchemaName) -> dict[str, Any]:
    """The schema with every ``$ref`` replaced by its target, computed once.

    Following references through the registry dominated validation time (URL joins on every
    descent); the schemas are not recursive, so they can be flattened up front. A ``$ref``
    next to annotations only (description, default) merges with its target, the annotations
    winning; next to other keywords it becomes ``allOf`` so both still apply.
    """
    schema = load_schema(name)
    flat = _inline(schema, registry().resolver(schema_uri(name)), ())
    flat.pop("$defs", None)
    return flat  # type: ignore[no-any-return]


def _inline(node: Any, resolver: Any, active: tuple[int, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, resolver, active) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return {k: _inline(v, resolver, active) for k, v in node.items()}
    resolved = resolver.lookup(ref)
    if id(resolved.contents) in active:
        raise ValueError(f"recursive $ref {ref!r}: the schemas must not be recursive")
    target = _inline(resolved.contents, resolved.resolver, (*active, id(resolved.contents)))
    siblings = {k: _inline(v, resolver, active) for k, v in node.items() if k != "$ref"}
    if not set(siblings) <= _MERGED:
        return {"allOf": [target], **siblings}
    merged = {**target, **siblings}
    value_description = target.get(VALUE_DESCRIPTION, target.get("description"))
    if value_description is not None and merged.get("description") != value_description:
        merged[VALUE_DESCRIPTION] = value_description
    return merged


# --- duration bounds ------------------------------------------------------------------------------
# JSON Schema bounds numbers only, and durations are strings ("90s", "1m30s"). The schemas bound
# them with two keywords of their own, ``minDuration`` and ``maxDuration`` (duration strings);
# validators that do not know them (editors) ignore them, and the descriptions repeat the range.


def _duration_range(schema: dict[str, Any]) -> str:
    low, high = schema.get("minDuration"), schema.get("maxDuration")
    if low is not None and high is not None:
        return f"give a duration from {low} to {high}"
    return f"give a duration of at least {low}" if low is not None else f"give a duration of at most {high}"


def _duration_bound(keyword: str) -> Any:
    def check(validator: Any, bound: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
        if not isinstance(instance, str) or not _DURATION.fullmatch(instance):
            return  # the pattern reports it
        seconds, limit = parse_duration(instance), parse_duration(bound)
        if (seconds > limit) if keyword == "maxDuration" else (seconds < limit):
            yield ValidationError(f"{instance!r} is out of range: {_duration_range(schema)}")

    return check


_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(us|ms|s|m|h))+$")  # common.schema.json#/$defs/duration
DURATION_BOUNDS = ("minDuration", "maxDuration")
Validator = jsonschema.validators.extend(
    Draft202012Validator, {k: _duration_bound(k) for k in DURATION_BOUNDS}
)


@cache
def validator(name: SchemaName) -> Draft202012Validator:
    """A compiled validator for one schema (the registry stays attached for any ``$ref`` left)."""
    result: Draft202012Validator = Validator(inlined(name), registry=registry())
    return result


def validate(doc: Document, name: SchemaName) -> list[ConfigError]:
    """Every schema violation in ``doc``, each located and explained (one error per bad field)."""
    found: dict[ConfigError, None] = {}  # ordered and without repeats
    for err in _leaves(validator(name).iter_errors(doc.data)):
        for problem in _explain(doc, err):
            found.setdefault(problem)
    return list(found)


def _leaves(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """Replace oneOf/anyOf umbrella errors by the most relevant error inside them.

    When the alternatives fail only because of ``not`` clauses (both of two exclusive fields
    given), the umbrella itself says more than any one branch.
    """
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.context:
            best = jsonschema.exceptions.best_match(err.context)
            yield err if best is None or best.validator == "not" else best
        else:
            yield err


def _described(schema: Any) -> str:
    if isinstance(schema, dict):
        desc = schema.get("description")
        if isinstance(desc, str):
            return desc.rstrip(".")
    return ""


def _expected(schema: Any) -> str:
    """``A duration such as 30s`` -> ``expected a duration such as 30s``.

    Only descriptions of a value's form ("A ...", "An ...") read well after "expected"; for
    others (a field's purpose, "Expected SHA-256 of the file") this is empty.
    """
    what = str(schema.get(VALUE_DESCRIPTION, "")).rstrip(".") if isinstance(schema, dict) else ""
    what = what or _described(schema)
    if not what.startswith(("A ", "An ")):
        return ""
    return f"expected {what[0].lower()}{what[1:]}"


def _shown(value: Any) -> str:
    """A value as it appears in a message: repr, cut short (a whole mapping can be long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


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
    """A did-you-mean hint: close spelling, ignoring case, or the one choice that contains ``word``."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    if not close:
        close = [c for c in by_lower if word and word.lower() in c]
        close = close if len(close) == 1 else []
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


# Spellings of Triton data types that other tools use (numpy, PyTorch, ONNX, C): the enum's
# spelling differs too much for a did-you-mean by letters ('float32' is closest to 'INT32').
_ENUM_ALIASES = {
    "float": "FP32",
    "float32": "FP32",
    "single": "FP32",
    "float16": "FP16",
    "half": "FP16",
    "float64": "FP64",
    "double": "FP64",
    "bfloat16": "BF16",
    "bool_": "BOOL",
    "boolean": "BOOL",
    "long": "INT64",
    "str": "STRING",
    "string": "STRING",
    "bytes": "STRING",
    "object": "STRING",
}


def _alias(word: str, choices: list[str]) -> str:
    """A did-you-mean hint from the alias table (``float32`` -> ``FP32``), if the target is a choice."""
    target = _ENUM_ALIASES.get(word.lower().removeprefix("torch.").removeprefix("np."))
    return f" (did you mean {target!r}?)" if target in choices else ""


def _case_hint(value: Any, err: ValidationError) -> str:
    """A hint when only the letter case is wrong (an upper-case hex digest, say)."""
    if not isinstance(value, str) or value == value.lower():
        return ""
    try:
        fits = Draft202012Validator(err.schema).is_valid(value.lower())
    except jsonschema.exceptions.SchemaError:
        return ""
    return f" (write it in lower case: {value.lower()!r})" if fits and len(value) <= 200 else ""


def _property_name_error(err: ValidationError) -> bool:
    """Errors raised by ``propertyNames`` concern a key, not the mapping holding it."""
    schema_path = list(err.relative_schema_path)
    return any(
        part == "propertyNames" and (i == 0 or schema_path[i - 1] != "properties")
        for i, part in enumerate(schema_path)
    )


def _explain(doc: Document, err: ValidationError) -> Iterator[ConfigError]:
    path = tuple(err.absolute_path)
    inst = err.instance
    kind = err.validator
    if _property_name_error(err) and isinstance(inst, str):
        what = _expected(err.schema) or f"a key matching {err.validator_value}"
        yield doc.error((*path, inst), f"{inst!r} is not a valid name here: {what}", key=True)
    elif kind == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(err.schema.get("properties", {}))
        valid = f"; valid fields: {', '.join(allowed)}" if allowed else ""
        for key in sorted(k for k in inst if k not in allowed):
            yield doc.error((*path, key), f"unknown field {key!r}{_suggest(key, allowed)}{valid}", key=True)
    elif kind == "required" and isinstance(inst, dict):
        # jsonschema raises one error per missing field without naming it: name them all here.
        for missing in (str(n) for n in err.validator_value if n not in inst):
            what = _described(err.schema.get("properties", {}).get(missing, {}))
            yield doc.error(
                (*path, missing), f"required field {missing!r} is missing" + (f" ({what})" if what else "")
            )
    elif kind == "enum":
        options = [str(v) for v in err.validator_value]
        hint = (_alias(inst, options) or _suggest(inst, options)) if isinstance(inst, str) else ""
        yield doc.error(path, f"{inst!r} is not one of: {', '.join(options)}{hint}")
    elif kind == "type":
        want = err.validator_value
        wants = " or ".join(
            _JSON_TYPES.get(str(w), str(w)) for w in (want if isinstance(want, list) else [want])
        )
        hint = ""
        if isinstance(inst, int | float) and "string" in str(want):
            # YAML turned 1.30 into a number and yes/true into a boolean: quoting keeps the text,
            # if the text is what the field wants (a bare 30 for a duration is not).
            text = doc.raw.get(path, str(inst))
            if Draft202012Validator(err.schema).is_valid(text):
                hint = f' (write it in quotes: "{text}")'
            elif _expected(err.schema):
                hint = f"; {_expected(err.schema)}"
        found = "nothing (an empty value)" if inst is None else f"{_type_name(inst)} {_shown(inst)}"
        yield doc.error(path, f"expected {wants}, found {found}{hint}")
    elif kind == "pattern":
        what = _expected(err.schema)
        if not what:
            desc = _described(err.schema)
            what = f"does not match {err.validator_value}" + (f" ({desc})" if desc else "")
        yield doc.error(path, f"{_shown(inst)} is not valid: {what}{_case_hint(inst, err)}")
    elif kind == "not":
        desc = _described(err.schema)
        yield doc.error(
            path, f"{_shown(inst)} is not allowed here" + (f" ({desc[0].lower()}{desc[1:]})" if desc else "")
        )
    elif kind in ("oneOf", "anyOf"):
        forms = [b.get("required") for b in err.validator_value if isinstance(b, dict)]
        if forms and all(isinstance(f, list) and len(f) == 1 for f in forms):
            names = ", ".join(str(f[0]) for f in forms if f)
            yield doc.error(
                path,
                f"give exactly one of: {names}"
                + (f" ({_described(err.schema)})" if _described(err.schema) else ""),
            )
        else:
            yield doc.error(path, "must match exactly one of the allowed forms: " + _described(err.schema))
    elif kind == "uniqueItems":
        yield doc.error(path, "list items must be unique")
    elif kind in ("minItems", "minProperties"):
        yield doc.error(path, f"must not be empty (at least {err.validator_value})")
    else:
        yield doc.error(path, err.message)


# --- defaults -------------------------------------------------------------------------------------


def apply_defaults(data: dict[str, Any], name: SchemaName) -> dict[str, Any]:
    """A deep copy of schema-valid ``data`` with every schema ``default`` filled in.

    A property that is absent and has a default gets it; then its own properties are filled in
    turn, so ``envoy: {}`` by default becomes a complete Envoy block.
    """
    out: dict[str, Any] = clone(data)
    _fill(inlined(name), out)
    return out


def clone(value: Any) -> Any:
    """Deep copy of plain JSON data (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


_HAS_DEFAULTS: dict[int, bool] = {}


def _has_defaults(schema: Any) -> bool:
    """Whether any default lies at or below ``schema`` (memoised: inlined schemas live forever)."""
    key = id(schema)
    known = _HAS_DEFAULTS.get(key)
    if known is None:
        if not isinstance(schema, dict):
            known = False
        else:
            subs = [
                *schema.get("properties", {}).values(),
                schema.get("additionalProperties"),
                schema.get("items"),
            ]
            known = any("default" in sub for sub in schema.get("properties", {}).values()) or any(
                _has_defaults(sub) for sub in subs
            )
        _HAS_DEFAULTS[key] = known
    return known


def _fill(schema: dict[str, Any], value: Any) -> None:
    if not _has_defaults(schema):
        return
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value:
                if "default" not in sub:
                    continue
                value[key] = clone(sub["default"])
            _fill(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    _fill(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(schema["items"], item)


# --- one value against one definition -------------------------------------------------------------
# For values taken from another format (the SuperSONIC importer): checked against the definition
# the value will land in, with errors located in the file it was read from.


def definition(name: str, pointer: str) -> dict[str, Any]:
    """One definition of a schema (``name`` such as ``common``, ``pointer`` such as ``/$defs/labels``),
    references inlined."""
    resolved = registry().resolver(schema_uri(name)).lookup(f"#{pointer}")
    result: dict[str, Any] = _inline(resolved.contents, resolved.resolver, ())
    return result


def validate_part(doc: Document, at: JsonPath, value: Any, name: str, pointer: str) -> list[ConfigError]:
    """Every violation of ``value`` against one definition, located at ``at`` (and below) in ``doc``."""
    errors = list(Validator(definition(name, pointer), registry=registry()).iter_errors(value))
    for err in errors:
        err.path.extendleft(reversed(at))
    found: dict[ConfigError, None] = {}
    for err in _leaves(iter(errors)):
        for problem in _explain(doc, err):
            found.setdefault(problem)
    return list(found)


__all__ = [
    "SCHEMA_DIR",
    "SchemaName",
    "apply_defaults",
    "clone",
    "definition",
    "format_path",
    "inlined",
    "load_schema",
    "registry",
    "validate",
    "validate_part",
]
