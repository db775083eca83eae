"""Import a SuperSONIC Helm values file (chart 0.3.x) as a deployment of this repository.

:func:`import_values` checks the file as ``helm install`` would (merged over the chart's defaults,
validated against the chart's schema), converts it (``convert.py``, driven by the key table
``keys.yaml``), and reports every key of the file: mapped, mapped with a change, not
representable, unused, or unknown to the chart. The result validates like any other
deployment: :func:`validate_import` runs the repository's own checks on it.

Example::

    result = import_values(Path("values-geddes-cms.yaml"), tree, experiment="cms", site="geddes",
                           name="particlenet-geddes")
    print(result.deployment_yaml)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import layout
from pipelines.config.checked import check_tree
from pipelines.config.errors import ConfigError, ConfigErrors, display_path
from pipelines.config.footprint import Footprint, deployment_footprint
from pipelines.config.loader import Document, load_file
from pipelines.config.model import deployment_ref
from pipelines.config.quantity import cpu_text, memory_text, parse_quantity
from pipelines.config.tree import Tree, deep_merge
from pipelines.importers.supersonic.chart import CHART_VERSION, chart_errors, defaults, merged
from pipelines.importers.supersonic.convert import Converted, Converter
from pipelines.importers.supersonic.table import Key, Status, format_key, table

__all__ = [
    "CHART_VERSION",
    "ImportResult",
    "ReportLine",
    "describe",
    "import_values",
    "merge_fragment",
    "validate_import",
]

STATUS_TEXT: dict[Status, str] = {
    "mapped": "mapped",
    "changed": "mapped with a change",
    "unrepresentable": "not representable",
    "unused": "unused",
    "unknown": "unknown key",
}


@dataclass(frozen=True)
class ReportLine:
    """One key (or one tritonserver option) of the values file and what became of it."""

    key: str
    line: int
    value: str
    status: Status
    target: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "line": self.line,
            "value": self.value,
            "status": self.status,
            "target": self.target,
            "why": self.why,
        }


def describe(line: ReportLine) -> str:
    """``mapped with a change -> triton.gpu: why`` / ``not representable: why``."""
    head = STATUS_TEXT[line.status] + (f" -> {line.target}" if line.target else "")
    return head + (f": {line.why}" if line.why else "")


@dataclass(frozen=True)
class ImportResult:
    source: str
    experiment: str
    site: str
    name: str
    namespace: str
    deployment: dict[str, Any]
    fragment: dict[str, Any]
    fragment_notes: tuple[str, ...]
    report: tuple[ReportLine, ...]

    @property
    def deployment_yaml(self) -> str:
        head = (
            "# yaml-language-server: $schema=../../schemas/deployment.schema.json\n"
            f"# Imported from the SuperSONIC values file {self.source} (chart {CHART_VERSION}) by\n"
            f"# `sonic import supersonic`; its report says what changed and what is not representable.\n"
        )
        return head + _dump(self.deployment)

    @property
    def fragment_yaml(self) -> str:
        if not self.fragment:
            return ""
        head = [
            f"# Site fragment for {layout.site_file(self.site)} (its admins merge it): what the imported",
            f"# deployment {deployment_ref(self.experiment, self.name)} needs and the site does not offer yet.",
            *(f"#   {n}" for n in self.fragment_notes),
        ]
        return "\n".join(head) + "\n" + _dump(self.fragment)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "experiment": self.experiment,
            "site": self.site,
            "name": self.name,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "siteFragment": self.fragment,
            "siteFragmentNotes": list(self.fragment_notes),
            "report": [line.as_dict() for line in self.report],
        }


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, width=1_000_000, allow_unicode=True
    )


def import_values(
    values: Path,
    tree: Tree,
    *,
    experiment: str,
    site: str,
    name: str | None = None,
    namespace: str | None = None,
    models: tuple[str, ...] = (),
    display: str | None = None,
) -> ImportResult:
    """Convert one values file; raises :class:`ConfigErrors` (every problem, located) when it cannot."""
    doc = load_file(values, display or display_path(values))
    errors = chart_errors(doc)
    if errors:
        raise ConfigErrors(errors)
    target = tree.sites.get(site)
    if target is None:
        raise ConfigErrors(
            [_usage(doc, f"unknown site {site!r} (no {layout.site_file(site)})", list(tree.sites))]
        )
    if experiment not in tree.experiments:
        raise ConfigErrors(
            [
                _usage(
                    doc,
                    f"unknown experiment {experiment!r} (no {layout.experiment_file(experiment)})",
                    list(tree.experiments),
                )
            ]
        )
    converted = Converter(doc, merged(doc), tree, experiment, target, name, namespace, models).run()
    if converted.errors:
        raise ConfigErrors(converted.errors)
    result = ImportResult(
        doc.display,
        experiment,
        site,
        converted.name,
        converted.namespace,
        converted.deployment,
        converted.fragment,
        tuple(converted.fragment_notes),
        tuple(report(doc, converted)),
    )
    return _with_namespace_quota(result, tree.root)


def _with_namespace_quota(result: ImportResult, root: Path) -> ImportResult:
    """Propose the namespace quota the site must grant when the import does not fit the current one.

    Counted exactly as validation counts it (:mod:`pipelines.config.footprint`), over every
    deployment of the namespace with the imported one in it: SuperSONIC sites grant no such
    quota, so a real values file (Geddes: 16 cores per replica, up to 10 replicas) often needs more.
    """
    scratch = Path(tempfile.mkdtemp(prefix="sonic-import-quota-"))
    try:
        loaded, _ = check_tree(_scratch_copy(result, root, scratch)[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    site = loaded.sites.get(result.site)
    grant = site.experiments.get(result.experiment) if site else None
    if site is None or grant is None:
        return result
    total = Footprint()
    for p in loaded.placements_at(site.name):
        if p.namespace == result.namespace:
            total = total + deployment_footprint(p, site)
    fragment = copy.deepcopy(result.fragment)
    notes = list(result.fragment_notes)
    for key, need, have, shown in (
        ("cpu", max(total.requests_cpu, total.limits_cpu), parse_quantity(grant.quota.cpu), cpu_text),
        (
            "memory",
            max(total.requests_memory, total.limits_memory),
            parse_quantity(grant.quota.memory),
            memory_text,
        ),
        ("pods", Decimal(total.pods), Decimal(grant.quota.pods), lambda d: str(int(d))),
    ):
        if need <= have:
            continue
        # Rounded up to whole cores and GiB: a quota the site admins would write.
        value: str | int = {"cpu": str(math.ceil(need)), "memory": f"{math.ceil(need / 2**30)}Gi"}.get(
            key, int(need)
        )
        quota = (
            fragment.setdefault("experiments", {}).setdefault(result.experiment, {}).setdefault("quota", {})
        )
        quota[key] = value
        notes.append(
            f"experiments.{result.experiment}.quota.{key}: namespace {result.namespace!r} needs {shown(need)} "
            f"at its most with this deployment (the quota is {shown(have)}; docs/security.md, 'Quotas')"
        )
    if not notes[len(result.fragment_notes) :]:
        return result
    return dataclasses.replace(result, fragment=fragment, fragment_notes=tuple(notes))


def _scratch_copy(result: ImportResult, root: Path, scratch: Path) -> tuple[Path, Path, Path]:
    """A copy of the tree in ``scratch`` with the import written in: (root, deployment file, site file)."""
    for part in (layout.EXPERIMENTS_DIR, layout.SITES_DIR):
        if not (scratch / part).exists():
            shutil.copytree(root / part, scratch / part)
    out = scratch / layout.deployment_file(result.experiment, result.name)
    out.write_text(result.deployment_yaml, encoding="utf-8")
    site_file = scratch / layout.site_file(result.site)
    if result.fragment:
        data = yaml.safe_load(site_file.read_text(encoding="utf-8"))
        site_file.write_text(_dump(merge_fragment(data, result.fragment)), encoding="utf-8")
    return scratch, out, site_file


def _usage(doc: Document, message: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(message.split("'")[1], known, n=1)
    hint = (
        f"; did you mean {close[0]!r}?" if close else ""
    ) + f" (known: {', '.join(sorted(known)) or 'none'})"
    return ConfigError(doc.locate(()), "(top level)", message + hint)


# --- the report ----------------------------------------------------------------------------------


def report(doc: Document, converted: Converted) -> list[ReportLine]:
    """Every key of the file (down to the table's granularity), in file order, plus each Triton option."""
    lines: list[ReportLine] = []
    t = table()

    def walk(node: Any, path: Key) -> None:
        if path and (t.stops_at(path) or not isinstance(node, dict) or not node):
            lines.append(_line(doc, converted, path, node))
            if path in (("triton", "args"), ("triton", "command")) and path == _args_key(doc):
                for f in converted.flags:
                    lines.append(
                        ReportLine(
                            f"triton.args: {f.option.text}",
                            doc.locate(path).line,
                            f.option.value or "",
                            f.status,
                            f.target,
                            f.why,
                        )
                    )
            return
        for key, value in node.items():
            walk(value, (*path, str(key)))

    walk(doc.data, ())
    for path in converted.defaults_used:
        if table().match(path) is not None and path[:2] not in (("triton", "args"), ("triton", "command")):
            line = _line(doc, converted, path, _default(path))
            lines.append(
                ReportLine(f"(chart default) {line.key}", 0, line.value, line.status, line.target, line.why)
            )
    if _args_key(doc) is None and converted.flags:  # the chart's default command line
        for f in converted.flags:
            lines.append(
                ReportLine(
                    f"(chart default) triton.args: {f.option.text}",
                    0,
                    f.option.value or "",
                    f.status,
                    f.target,
                    f.why,
                )
            )
    return lines


def _default(path: Key) -> Any:
    node: Any = defaults()
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    return node


def _args_key(doc: Document) -> Key | None:
    triton = doc.data.get("triton")
    if isinstance(triton, dict):
        if "args" in triton:
            return ("triton", "args")
        if "command" in triton:
            return ("triton", "command")
    return None


def _line(doc: Document, converted: Converted, path: Key, value: Any) -> ReportLine:
    where = doc.keys.get(path) or doc.locate(path)
    shown = _show(value)
    note = converted.notes.get(path)
    entry = table().match(path)
    if note is not None:
        return ReportLine(format_key(path), where.line, shown, note.status, note.target, note.why)
    if entry is None:
        return ReportLine(format_key(path), where.line, shown, "unknown", "", _unknown(path))
    if _off(path, value):  # nothing to carry, whatever the key would map to
        return ReportLine(
            format_key(path), where.line, shown, "unused", entry.target, "off or empty: nothing to carry"
        )
    return ReportLine(format_key(path), where.line, shown, entry.status, entry.target, entry.why)


def _off(path: Key, value: Any) -> bool:
    return value in ({}, [], "", None) or (path[-1] == "enabled" and value is False)


def _unknown(path: Key) -> str:
    """Not a key of the chart: Helm ignores it silently (no additionalProperties: false)."""
    node: Any = defaults()
    for p in path[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
    siblings = [str(k) for k in node] if isinstance(node, dict) else []
    siblings += [e[len(path) - 1] for e in table().entries if len(e) == len(path) and e[:-1] == path[:-1]]
    close = difflib.get_close_matches(path[-1], sorted(set(siblings)), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{hint}not a key of SuperSONIC chart {CHART_VERSION}: Helm ignores it silently, so it had no effect"
    )


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# --- validation of the result --------------------------------------------------------------------


def merge_fragment(site_data: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """The site file's data with the fragment merged in (mappings merged, other values replaced)."""
    merged_data: dict[str, Any] = deep_merge(site_data, fragment)
    return merged_data


def validate_import(result: ImportResult, root: Path, dest: Path | None = None) -> list[ConfigError]:
    """The repository's own checks on the imported deployment, in a scratch copy of the tree.

    The site fragment is merged into the copy's site file first, as the site admins would. Returns
    the errors found in the deployment file or the site file (empty: it validates). With ``dest``,
    the copy is made there and kept (the tests render from it).
    """
    scratch = dest or Path(tempfile.mkdtemp(prefix="sonic-import-"))
    try:
        _, out, site_file = _scratch_copy(result, root, scratch)
        _, errors = check_tree(scratch)
        keep = {out.resolve(), site_file.resolve()}
        return [e for e in errors if _resolved(scratch, e) in keep]
    finally:
        if dest is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _resolved(root: Path, err: ConfigError) -> Path:
    path = Path(err.location.file)
    return (path if path.is_absolute() else Path.cwd() / path).resolve()
