"""The pull-request comment: did validation pass, and what would change at each site.

"What changes" is read from git, not recomputed: the rendered tree is committed and
``sonic render --check`` proves it current, so the diff of ``gitops/rendered/<site>/...`` between
the merge base and the pull request's head is exactly what Argo CD would apply at each site.
Pure functions of their inputs, so the comment is byte-identical for the same pull request.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipelines.config import layout
from pipelines.config.model import deployment_ref
from pipelines.ops.github import COMMENT_MARKER

ChangeKind = Literal["added", "modified", "removed"]
_KIND = {"A": "added", "M": "modified", "T": "modified", "D": "removed", "C": "added"}
_SYMBOL = {"added": "+", "modified": "~", "removed": "-"}
RENDERED = f"{layout.RENDERED_DIR}/"
ARGOCD = f"{layout.ARGOCD_DIR}/"


@dataclass(frozen=True)
class FileChange:
    kind: ChangeKind
    path: str  # repository-relative


@dataclass(frozen=True)
class Failure:
    """One failed step, as Argo Workflows lists it in ``{{workflow.failures}}``."""

    step: str
    message: str


def parse_name_status(text: str) -> list[FileChange]:
    """``git diff --name-status --no-renames`` output -> changes (unknown status letters skipped)."""
    out = []
    for line in text.splitlines():
        status, _, path = line.partition("\t")
        kind = _KIND.get(status[:1])
        if kind and path:
            out.append(FileChange(kind, path))  # type: ignore[arg-type]
    return sorted(out, key=lambda c: c.path)


def parse_failures(text: str) -> list[Failure]:
    """Argo's ``{{workflow.failures}}`` JSON (absent, empty or ``null`` when nothing failed)."""
    text = text.strip()
    if not text or text in ("null", "[]") or text.startswith("{{"):
        return []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return [Failure("workflow", text[:300])]
    items: Iterable[Any] = raw if isinstance(raw, list) else []
    failures = []
    for item in items:
        if isinstance(item, Mapping):
            step = str(item.get("displayName") or item.get("templateName") or "step")
            failures.append(Failure(step, str(item.get("message") or item.get("phase") or "failed")))
    return failures


def by_site(changes: Sequence[FileChange]) -> dict[str, dict[str, list[FileChange]]]:
    """Rendered changes grouped as site -> ``experiment/deployment`` -> files (sorted)."""
    grouped: dict[str, dict[str, list[FileChange]]] = defaultdict(lambda: defaultdict(list))
    for c in changes:
        if not c.path.startswith(RENDERED):
            continue
        parts = c.path[len(RENDERED) :].split("/")
        if len(parts) >= 4:
            site, experiment, deployment = parts[0], parts[1], parts[2]
            grouped[site][deployment_ref(experiment, deployment)].append(c)
        elif parts:
            grouped[parts[0]]["(site-wide)"].append(c)
    return {
        s: {d: sorted(fs, key=lambda c: c.path) for d, fs in sorted(ds.items())}
        for s, ds in sorted(grouped.items())
    }


def comment_body(
    *,
    outcome: str,
    head: str,
    changes: Sequence[FileChange],
    failures: Sequence[Failure] = (),
    workflow: str = "",
    link: str = "",
    relevant: bool = True,
) -> str:
    """The Markdown of the bot's pull-request comment (starts with the marker that finds it again)."""
    passed = outcome == "Succeeded"
    verdict = "✅ validation passed" if passed else f"❌ validation {outcome.lower() or 'failed'}"
    run = f"[{workflow}]({link})" if workflow and link else f"`{workflow}`" if workflow else "the pipeline"
    lines = [
        COMMENT_MARKER,
        f"### SONIC GitOps: {verdict}",
        "",
        f"Commit `{head[:12]}`, checked by {run}.",
        "",
    ]
    if failures:
        lines += ["**Failed steps**", "", "| step | message |", "|---|---|"]
        lines += [f"| `{_cell(f.step)}` | {_cell(f.message)} |" for f in failures]
        lines.append("")
    if not relevant:
        lines.append(
            f"No change under `{layout.EXPERIMENTS_DIR}/` or `{layout.SITES_DIR}/`: nothing to validate or roll out."
        )
        return "\n".join(lines) + "\n"
    sites = by_site(changes)
    if not sites:
        lines.append("No rendered manifest changes: no site would see a difference.")
    else:
        lines += ["**What changes per site** (rendered manifests Argo CD would apply)", ""]
        for site, deployments in sites.items():
            lines += [f"<details open><summary>site <b>{site}</b>: {_count(deployments)}</summary>", ""]
            lines += ["| deployment | files |", "|---|---|"]
            for name, files in deployments.items():
                listed = ", ".join(f"{_SYMBOL[f.kind]} `{f.path.rsplit('/', 1)[-1]}`" for f in files)
                lines.append(f"| `{name}` | {_verb(files)}: {listed} |")
            lines += ["", "</details>", ""]
    argocd = [c for c in changes if c.path.startswith(ARGOCD)]
    if argocd:
        lines += ["**Argo CD objects**", ""]
        lines += [f"- {_SYMBOL[c.kind]} `{c.path}`" for c in argocd]
        lines.append("")
    lines.append("<sub>+ added, ~ modified, - removed. Updated on every push to this pull request.</sub>")
    return "\n".join(lines) + "\n"


def _verb(files: Sequence[FileChange]) -> str:
    kinds = {f.kind for f in files}
    if kinds == {"added"}:
        return "new"
    if kinds == {"removed"}:
        return "removed"
    return "changed"


def _count(deployments: Mapping[str, Sequence[FileChange]]) -> str:
    n = len(deployments)
    return f"{n} deployment{'s' if n != 1 else ''}"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())[:300]
