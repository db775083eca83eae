"""What a change to the rendered tree would do, per site and deployment, in a few words.

Pure: two ``{path: file text}`` maps in (before, after), a :class:`Summary` out. Used by
``sonic diff`` so a reviewer reads "replicas 2 -> 5, image 24.08 -> 24.09" instead of a
thousand-line YAML diff.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipelines.config.layout import ARGOCD_DIR, RENDERED_DIR
from pipelines.config.model import deployment_ref

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FIELDS = 4  # changed fields listed per object before "... and N more"

ObjectKey = tuple[str, str, str]  # kind, namespace, name


@dataclass
class ObjectChange:
    """One object added, removed or changed."""

    action: str  # "added" | "removed" | "changed"
    kind: str
    name: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        mark = {"added": "+", "removed": "-", "changed": "~"}[self.action]
        return f"{mark} {self.kind} {self.name}" + (f": {'; '.join(self.details)}" if self.details else "")


@dataclass
class UnitChange:
    """The changes to one deployment directory (or one site's Argo CD directory)."""

    site: str
    unit: str  # "<experiment>/<deployment>" or "argocd"
    status: str  # "new" | "removed" | "changed"
    objects: list[ObjectChange] = field(default_factory=list)


@dataclass
class Summary:
    units: list[UnitChange]

    @property
    def empty(self) -> bool:
        return not self.units

    def as_dict(self) -> dict[str, Any]:
        sites: dict[str, Any] = {}
        for u in self.units:
            sites.setdefault(u.site, []).append(
                {
                    "unit": u.unit,
                    "status": u.status,
                    "objects": [
                        {"action": o.action, "kind": o.kind, "name": o.name, "details": o.details}
                        for o in u.objects
                    ],
                }
            )
        return {"changed": not self.empty, "sites": sites}

    def lines(self) -> Iterator[str]:
        site = None
        for u in self.units:
            if u.site != site:
                site = u.site
                yield f"site {site}"
            yield f"  {u.unit} ({u.status})"
            for o in u.objects:
                yield f"    {o}"


def _unit_of(path: str) -> tuple[str, str] | None:
    parts = path.split("/")
    rendered, argocd = RENDERED_DIR.split("/"), ARGOCD_DIR.split("/")
    if parts[: len(rendered)] == rendered and len(parts) == len(rendered) + 4:  # <site>/<exp>/<dep>/<file>
        return parts[-4], deployment_ref(parts[-3], parts[-2])
    if parts[: len(argocd)] == argocd and len(parts) == len(argocd) + 2:  # <site>/<file>
        return parts[-2], "argocd"
    return None


def _objects(files: Mapping[str, str]) -> dict[tuple[str, str], dict[ObjectKey, dict[str, Any]]]:
    out: dict[tuple[str, str], dict[ObjectKey, dict[str, Any]]] = {}
    for path, text in files.items():
        unit = _unit_of(path)
        # kustomization.yaml and application.json describe the directory, they are no objects.
        if unit is None or path.endswith("/kustomization.yaml") or not path.endswith(".yaml"):
            continue
        bucket = out.setdefault(unit, {})
        try:
            docs = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError:
            docs = [{"kind": "(unparsable file)", "metadata": {"name": path.rsplit("/", 1)[-1]}}]
        for doc in docs:
            if isinstance(doc, dict):
                md = doc.get("metadata") or {}
                bucket[(str(doc.get("kind")), str(md.get("namespace", "")), str(md.get("name")))] = doc
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for k, v in obj.items():
            flat.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return flat or {prefix: {}}
    if isinstance(obj, list):
        flat = {}
        for i, v in enumerate(obj):
            flat.update(_flatten(v, f"{prefix}[{i}]"))
        return flat or {prefix: []}
    return {prefix: obj}


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_NOTABLE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^spec\.replicas$"), "replicas"),
    (re.compile(r"^spec\.template\.spec\.containers\[\d+\]\.image$"), "image"),
    (re.compile(r"^spec\.(min|max)ReplicaCount$"), "{0} replicas"),
    (re.compile(r"^spec\.triggers\[\d+\]\.metadata\.(threshold|query)$"), "{0}"),
    (re.compile(r"^spec\.template\.spec\.containers\[\d+\]\.resources\.(limits|requests)\.(.+)$"), "{1} {0}"),
    (re.compile(r"^spec\.rules\[\d+\]\.host$"), "host"),
]


# Changes whose values say nothing to a reader: a fixed phrase instead.
_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^spec\.template\.metadata\.annotations\.sonic\.fastml\.org/config-sha256$"),
        "config changed: pods roll",
    ),
]


def _details(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    a, b = _flatten(before), _flatten(after)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    details: list[str] = []
    rest: list[str] = []
    for path in changed:
        phrase = next((text for pattern, text in _PHRASES if pattern.match(path)), None)
        if phrase is not None:
            details.append(phrase)
            continue
        for pattern, label in _NOTABLE:
            m = pattern.match(path)
            if m:
                details.append(f"{label.format(*m.groups())} {_show(a.get(path))} -> {_show(b.get(path))}")
                break
        else:
            # Group by the first two levels: "spec.template" rather than every argument.
            rest.append(".".join(re.sub(r"\[\d+\]", "[]", path).split(".")[:4]))
    groups = sorted(set(rest))
    if groups:
        shown = groups[:MAX_FIELDS]
        more = f" and {len(groups) - MAX_FIELDS} more" if len(groups) > MAX_FIELDS else ""
        details.append("changed " + ", ".join(shown) + more)
    return details


def summarize(before: Mapping[str, str], after: Mapping[str, str]) -> Summary:
    """Objects added, removed and changed per site and deployment between two rendered trees."""
    old, new = _objects(before), _objects(after)
    units: list[UnitChange] = []
    for unit in sorted(set(old) | set(new)):
        o, n = old.get(unit, {}), new.get(unit, {})
        status = "new" if not o else "removed" if not n else "changed"
        change = UnitChange(unit[0], unit[1], status)
        for key in sorted(set(o) | set(n)):
            kind, _, name = key
            if key not in o:
                change.objects.append(ObjectChange("added", kind, name))
            elif key not in n:
                change.objects.append(ObjectChange("removed", kind, name))
            elif o[key] != n[key]:
                change.objects.append(ObjectChange("changed", kind, name, _details(o[key], n[key])))
        if change.objects:
            units.append(change)
    return Summary(units)
