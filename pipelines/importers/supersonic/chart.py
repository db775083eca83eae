"""The SuperSONIC chart's values format: defaults, Helm's merge, and the chart's own schema.

A values file is checked the way ``helm install`` checks it: merged over the chart's defaults
(``chart/values.yaml``), then validated against the chart's ``values.schema.json``. Errors name
the file, line and key of the values file (see ``chart/NOTICE.md`` for where the data comes from).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from pipelines.config.errors import ConfigError, format_path
from pipelines.config.loader import Document, load_file

CHART_DIR = Path(__file__).with_name("chart")
CHART_VERSION = "0.3.1"


@cache
def defaults() -> dict[str, Any]:
    """The chart's default values."""
    data: dict[str, Any] = load_file(CHART_DIR / "values.yaml").data
    return data


@cache
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    return data


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's coalescing of a values file over the defaults.

    Mappings merge key by key; any other value replaces the default; ``null`` deletes the key.
    """
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = helm_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merged(doc: Document) -> dict[str, Any]:
    result: dict[str, Any] = helm_merge(defaults(), doc.data)
    return result


def chart_errors(doc: Document) -> list[ConfigError]:
    """What ``helm install`` would refuse: the merged values against the chart's schema."""
    errors: dict[ConfigError, None] = {}
    for err in Draft7Validator(schema()).iter_errors(merged(doc)):
        path = tuple(err.absolute_path)
        if err.validator == "type":
            want = err.validator_value
            want_text = " or ".join(want) if isinstance(want, list) else str(want)
            message = (
                f"{_show(err.instance)} is not of type {want_text}: chart {CHART_VERSION}'s "
                f"values.schema.json expects {want_text} here (helm install would refuse this file)"
            )
        elif err.validator == "required":
            message = (
                f"{err.message}: the file removes (null) a key the chart requires "
                "(helm install would refuse this file)"
            )
        else:
            message = f"{err.message} (chart {CHART_VERSION}'s values.schema.json)"
        located = doc.error(path, message)
        errors.setdefault(ConfigError(located.location, format_path(path), located.message))
    return list(errors)


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
