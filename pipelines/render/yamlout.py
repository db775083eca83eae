"""The one YAML writer for everything ``sonic render`` commits.

Deterministic and readable: block style, ``apiVersion``/``kind``/``metadata`` first and ``name``
first in every mapping, every other key sorted (so reordering keys in an input file never
shows up as a diff), multi-line strings as literal blocks, no anchors, a trailing newline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

# libyaml's emitter when PyYAML was built with it (20x faster, e.g. on Envoy's inlined Lua script).
_BaseDumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_WIDTH = 1_000_000  # never fold long lines (PromQL, arguments, URLs)

# Keys a reader expects first, in this order (objects, then nested mappings); all others follow sorted.
_TOP = {k: i for i, k in enumerate(("apiVersion", "kind", "metadata"))}
_NESTED = {k: i for i, k in enumerate(("name", "namespace", "record", "alert", "job_name"))}


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Block scalars for multi-line strings (scripts stay readable); no YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: Any, data: str) -> Any:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def canonical(obj: Any, top: bool = True) -> Any:
    """A copy of ``obj`` with mappings in canonical key order and tuples as lists."""
    if isinstance(obj, Mapping):
        rank = _TOP if top else _NESTED
        keys = sorted(obj, key=lambda k: (rank.get(k, len(rank)), str(k)))
        return {k: canonical(obj[k], False) for k in keys}
    if isinstance(obj, list | tuple):
        return [canonical(v, False) for v in obj]
    return obj


def dump(obj: Any) -> str:
    """One YAML document."""
    return dump_all([obj])


def dump_as_built(obj: Any) -> str:
    """One YAML document with mappings in the order the caller built them (for files read top
    to bottom by people, such as an Envoy bootstrap), otherwise written like everything else."""
    text: str = yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=_WIDTH
    )
    return text


def dump_all(docs: Iterable[Any], header: str = "") -> str:
    """Several documents separated by ``---``, after an optional comment ``header``."""
    text: str = yaml.dump_all(
        [canonical(d) for d in docs],
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=_WIDTH,
        explicit_start=False,
    )
    prefix = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return prefix + (text if text.endswith("\n") else text + "\n")
