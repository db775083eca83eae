"""The site's share of ``gitops/``: every object its cluster receives, and what those objects need.

The doctor derives what to look for in the cluster from the committed tree rather than from a
hand-written list, so a renderer that starts using a new kind, Secret or claim is checked the day
it does:

- ``gitops/rendered/<site>/*/*/``: what Argo CD applies (the files each ``kustomization.yaml``
  lists, into the namespace of the directory's ``application.json``);
- ``gitops/argocd/<site>/``: the AppProjects and ApplicationSet the admin applies once;
- the site's share of ``gitops/workflows/`` (docs/workflows.md, "Installing at a site").

Reading is the only side effect here; the functions below the loader are pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.render import ARGOCD, KUSTOMIZATION, RENDERED
from pipelines.render.argocd import APPLICATION_FILE

# pipelines/workflows/files.py says the same; importing it would load hera for one string
# (tests/doctor/test_manifests.py keeps the two in step).
WORKFLOWS = "gitops/workflows"

# Kinds a controller creates from another kind: the cluster must serve them although no file
# holds one. An ApplicationSet generates Applications; Argo Workflows runs a WorkflowTemplate
# or a CronWorkflow as Workflows (a Sensor's trigger names what it creates, see needed_kinds).
GENERATES: Mapping[tuple[str, str], str] = {
    ("argoproj.io", "ApplicationSet"): "Application",
    ("argoproj.io", "WorkflowTemplate"): "Workflow",
    ("argoproj.io", "CronWorkflow"): "Workflow",
}


class ShareError(Exception):
    """A committed file cannot be read as Kubernetes objects (hand-edited or half-written)."""


def workflow_files(site: str, *, receives_webhooks: bool) -> tuple[str, ...]:
    """The files of ``gitops/workflows/`` that the cluster of ``site`` receives.

    docs/workflows.md: ``common.yaml`` on every cluster running pipelines, ``rollout.yaml`` on
    every site cluster, the site's build template and scheduled validation there;
    ``pr-validation.yaml`` and ``events.yaml`` only on the cluster that receives GitHub webhooks.
    """
    files = [
        "common.yaml",
        "rollout.yaml",
        f"build-model-repository-{site}.yaml",
        f"scheduled-validation-{site}.yaml",
    ]
    if receives_webhooks:
        files += ["pr-validation.yaml", "events.yaml"]
    return tuple(files)


@dataclass(frozen=True)
class KindRef:
    """A kind at one API version, as a manifest's ``apiVersion`` and ``kind`` name it."""

    group: str  # "" for the core group
    version: str
    kind: str

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.group_version} {self.kind}"

    @classmethod
    def of(cls, api_version: str, kind: str) -> KindRef:
        group, _, version = api_version.rpartition("/")
        return cls(group, version, kind)


@dataclass(frozen=True)
class Manifest:
    """One object of one committed file, as it is applied.

    ``default_namespace`` is where an object without ``metadata.namespace`` lands (Argo CD's
    destination namespace for the rendered tree; None for files the admin applies as they are).
    """

    path: str  # repository-relative
    body: Mapping[str, Any]
    default_namespace: str | None = None

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind_ref(self) -> KindRef:
        return KindRef.of(self.api_version, self.kind)

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        """The namespace the object goes to if its kind is namespaced."""
        meta = self.body.get("metadata") or {}
        return meta.get("namespace") or self.default_namespace

    def describe(self) -> str:
        return f"{self.path} {self.kind}/{self.name}"


@dataclass(frozen=True)
class SiteShare:
    """Everything the site's cluster receives from the repository."""

    site: str
    rendered: tuple[Manifest, ...]  # applied by Argo CD
    argocd: tuple[Manifest, ...]  # applied once by the admin
    workflows: tuple[Manifest, ...]  # applied by the admin (docs/workflows.md)

    @property
    def manifests(self) -> tuple[Manifest, ...]:
        return self.rendered + self.argocd + self.workflows


def load_share(root: Path, site: str, *, receives_webhooks: bool = False) -> SiteShare:
    """Read the committed objects of ``site``; missing folders are empty (nothing rendered yet).

    Raises:
        ShareError: a file is not YAML, not a list of objects, or a listed file is missing.
    """
    rendered: list[Manifest] = []
    for app_file in sorted((root / RENDERED / site).glob(f"*/*/{APPLICATION_FILE}")):
        directory = app_file.parent
        try:
            namespace = json.loads(app_file.read_text(encoding="utf-8"))["namespace"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ShareError(
                f"{_rel(root, app_file)}: no destination namespace ({exc}); run sonic render"
            ) from exc
        rendered += _kustomization(root, directory, namespace)
    argocd_dir = root / ARGOCD / site
    argocd = _kustomization(root, argocd_dir, None) if (argocd_dir / KUSTOMIZATION).is_file() else []
    workflows: list[Manifest] = []
    for name in workflow_files(site, receives_webhooks=receives_webhooks):
        path = root / WORKFLOWS / name
        if path.is_file():  # a site without deployments has no build template, for instance
            workflows += _objects(root, path, None)
    return SiteShare(site, tuple(rendered), tuple(argocd), tuple(workflows))


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _kustomization(root: Path, directory: Path, namespace: str | None) -> list[Manifest]:
    """The objects of the files a kustomization lists (what Kustomize, and so Argo CD, applies)."""
    kfile = directory / KUSTOMIZATION
    try:
        resources = (yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}).get("resources", [])
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise ShareError(f"{_rel(root, kfile)}: {exc}; run sonic render") from exc
    out: list[Manifest] = []
    for name in resources:
        out += _objects(root, directory / str(name), namespace)
    return out


# The C loader when PyYAML has it: the rendered ConfigMaps hold large embedded files.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _objects(root: Path, path: Path, namespace: str | None) -> list[Manifest]:
    try:
        docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader))
    except (OSError, yaml.YAMLError) as exc:
        raise ShareError(f"{_rel(root, path)}: {exc}") from exc
    out = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ShareError(f"{_rel(root, path)}: a document that is not a Kubernetes object")
        out.append(Manifest(_rel(root, path), doc, namespace))
    return out


# --- what the objects need (pure) ------------------------------------------------------------------


def needed_kinds(manifests: Iterable[Manifest]) -> tuple[KindRef, ...]:
    """Every kind the cluster must serve: the objects' own and the kinds controllers create from them."""
    kinds: set[KindRef] = set()
    for m in manifests:
        ref = m.kind_ref
        kinds.add(ref)
        generated = GENERATES.get((ref.group, ref.kind))
        if generated:
            kinds.add(KindRef(ref.group, ref.version, generated))
        if ref.group == "argoproj.io" and ref.kind == "Sensor":
            kinds.update(_sensor_targets(m.body))
    return tuple(sorted(kinds, key=lambda k: (k.group, k.version, k.kind)))


def _sensor_targets(body: Mapping[str, Any]) -> Iterator[KindRef]:
    """The kinds an Argo Events Sensor creates: each Kubernetes trigger's ``source.resource``."""
    for trigger in (body.get("spec") or {}).get("triggers") or []:
        resource = (((trigger.get("template") or {}).get("k8s") or {}).get("source") or {}).get("resource")
        if isinstance(resource, dict) and resource.get("apiVersion") and resource.get("kind"):
            yield KindRef.of(str(resource["apiVersion"]), str(resource["kind"]))


@dataclass(frozen=True)
class SecretRef:
    """A Secret some object needs in ``namespace``, the keys it reads, and who reads it."""

    namespace: str
    name: str
    keys: tuple[str, ...]
    used_by: tuple[str, ...]  # files, or the site-file field that promises it
    optional: bool = False  # every reference says optional: a missing Secret is not an error
    tls: bool = False  # an Ingress certificate (kubernetes.io/tls)


@dataclass(frozen=True)
class ClaimRef:
    """A PersistentVolumeClaim some object mounts in ``namespace`` that the tree does not create."""

    namespace: str
    name: str
    used_by: tuple[str, ...]


def _mappings(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every mapping inside ``node``, depth first (pod specs sit at different depths per kind)."""
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _mappings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _mappings(value)


def _secret_uses(m: Manifest) -> Iterator[tuple[str, tuple[str, ...], bool, bool]]:
    """(name, keys, optional, tls) of each Secret ``m`` reads, in the shapes Kubernetes and KEDA use."""
    for d in _mappings(m.body):
        volume = d.get("secret")
        if isinstance(volume, Mapping):  # a volume (secretName) or a projected source (name)
            name = volume.get("secretName") or volume.get("name")
            if name:
                keys = tuple(
                    str(i["key"]) for i in volume.get("items") or [] if isinstance(i, Mapping) and "key" in i
                )
                yield str(name), keys, bool(volume.get("optional")), False
        for field in ("secretKeyRef", "secretRef"):  # env valueFrom, envFrom
            ref = d.get(field)
            if isinstance(ref, Mapping) and ref.get("name"):
                keys = (str(ref["key"]),) if ref.get("key") else ()
                yield str(ref["name"]), keys, bool(ref.get("optional")), False
    spec = m.body.get("spec") or {}
    if m.kind == "TriggerAuthentication":
        for ref in spec.get("secretTargetRef") or []:
            yield str(ref["name"]), (str(ref["key"]),), False, False
    if m.kind == "Ingress":
        for tls in spec.get("tls") or []:
            if tls.get("secretName"):
                yield str(tls["secretName"]), ("tls.crt", "tls.key"), False, True


def secret_refs(manifests: Iterable[Manifest], extra: Sequence[SecretRef] = ()) -> tuple[SecretRef, ...]:
    """Every Secret the objects read (plus ``extra``), one per namespace and name, keys merged."""
    merged: dict[tuple[str, str], SecretRef] = {}

    def add(ref: SecretRef) -> None:
        key = (ref.namespace, ref.name)
        old = merged.get(key)
        if old is None:
            merged[key] = ref
            return
        merged[key] = SecretRef(
            ref.namespace,
            ref.name,
            tuple(sorted(set(old.keys) | set(ref.keys))),
            tuple(sorted(set(old.used_by) | set(ref.used_by))),
            optional=old.optional and ref.optional,
            tls=old.tls or ref.tls,
        )

    for m in manifests:
        if m.namespace is None:
            continue
        for name, keys, optional, tls in _secret_uses(m):
            add(SecretRef(m.namespace, name, tuple(sorted(set(keys))), (m.path,), optional, tls))
    for ref in extra:
        add(ref)
    return tuple(sorted(merged.values(), key=lambda r: (r.namespace, r.name)))


def claim_refs(manifests: Sequence[Manifest]) -> tuple[ClaimRef, ...]:
    """Every claim the objects mount that none of them creates (Argo CD creates those)."""
    created = {(m.namespace, m.name) for m in manifests if m.kind == "PersistentVolumeClaim"}
    used: dict[tuple[str, str], set[str]] = {}
    for m in manifests:
        if m.namespace is None:
            continue
        for d in _mappings(m.body):
            pvc = d.get("persistentVolumeClaim")
            if isinstance(pvc, Mapping) and pvc.get("claimName"):
                key = (m.namespace, str(pvc["claimName"]))
                if key not in created:
                    used.setdefault(key, set()).add(m.path)
    return tuple(ClaimRef(ns, name, tuple(sorted(files))) for (ns, name), files in sorted(used.items()))


def storage_classes(manifests: Iterable[Manifest]) -> dict[str, tuple[str, ...]]:
    """StorageClass name -> files of the claims that ask for it."""
    out: dict[str, set[str]] = {}
    for m in manifests:
        if m.kind == "PersistentVolumeClaim":
            name = (m.body.get("spec") or {}).get("storageClassName")
            if name:
                out.setdefault(str(name), set()).add(m.path)
    return {k: tuple(sorted(v)) for k, v in sorted(out.items())}


def target_namespaces(manifests: Iterable[Manifest]) -> dict[str, tuple[str, ...]]:
    """Namespace -> files with objects that go into it (namespaced or not is decided by the server)."""
    out: dict[str, set[str]] = {}
    for m in manifests:
        if m.namespace and m.kind != "Namespace":
            out.setdefault(m.namespace, set()).add(m.path)
    return {k: tuple(sorted(v)) for k, v in sorted(out.items())}


def namespace_objects(manifests: Iterable[Manifest]) -> dict[str, str]:
    """Namespace name -> the file that creates it (``gitops/workflows/common.yaml`` does)."""
    return {m.name: m.path for m in manifests if m.kind == "Namespace" and m.api_version == "v1"}
