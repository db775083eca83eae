"""Where Triton finds its models: volumes, mounts and ``--model-repository`` paths.

Each kind of source is handled by one function, and the dispatch tables are keyed by the
very property names of the schemas (``modelRepository.{cvmfs,pvc,nfs,baked}`` in the
deployment schema, ``storage.cvmfs.{storageClass,hostPath}`` in the site schema). A test
compares these keys with the schemas, so a storage type can never be spelled one way in the
documentation and another in the renderer (SuperSONIC's ``cvmfs`` / ``cvmfs-hostPath``
mismatch left Triton with a silently empty volume).

Every mount is read-only: Triton never writes its model repository.

The configuration is validated (``pipelines.config.semantic.storage_available`` and friends):
what a rule refuses is an internal error here (:func:`~pipelines.render.errors.require`), never
a second, differently worded user-facing message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.config import names
from pipelines.config.hostpaths import cvmfs_host_path_problem
from pipelines.config.model import Placement, Site
from pipelines.modelrepo.freshness import stale_reasons
from pipelines.modelrepo.lock import Lock, lock_path
from pipelines.render.errors import problem, require
from pipelines.render.objects import meta

_SNAPSHOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
CVMFS_CLAIM_SIZE = "1Gi"  # CVMFS CSI ignores the size, but the API requires one


@dataclass
class ModelSources:
    """What the Triton pod needs for its models, in the order Triton should search them."""

    repositories: list[str] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)  # PersistentVolumeClaims to render


Handler = Callable[[Placement, Site, ModelSources], None]


def _stays_inside(p: Placement, field: str, path: str) -> None:
    """Refuse '.' and '..' segments: the schema already does, this guards typed input from elsewhere."""
    require(
        not any(part in (".", "..") for part in path.split("/")),
        "deployment.schema.json",
        f"{field}: {path!r} has a '.' or '..' segment; paths must stay inside their volume",
    )


def _cvmfs_claim(p: Placement, site: Site, out: ModelSources) -> None:
    cvmfs = site.storage.cvmfs
    assert cvmfs is not None and cvmfs.storage_class is not None
    out.objects.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta(p, "triton", names.cvmfs_claim_name(p)),
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": cvmfs.storage_class,
                "resources": {"requests": {"storage": CVMFS_CLAIM_SIZE}},
            },
        }
    )
    out.volumes.append(
        {"name": "cvmfs", "persistentVolumeClaim": {"claimName": names.cvmfs_claim_name(p), "readOnly": True}}
    )


def _cvmfs_host_path(p: Placement, site: Site, out: ModelSources) -> None:
    cvmfs = site.storage.cvmfs
    assert cvmfs is not None and cvmfs.host_path is not None
    refused = cvmfs_host_path_problem(cvmfs.host_path)
    require(refused is None, "semantic.host_paths", f"site {site.name!r} storage.cvmfs: {refused}")
    out.volumes.append({"name": "cvmfs", "hostPath": {"path": cvmfs.host_path, "type": "Directory"}})


# Keyed by the property names of site.schema.json#/properties/storage/properties/cvmfs.
CVMFS_MODES: dict[str, Handler] = {"storageClass": _cvmfs_claim, "hostPath": _cvmfs_host_path}


def _cvmfs(p: Placement, site: Site, out: ModelSources) -> None:
    if not p.model_repository.cvmfs and not p.triton.extra_mounts:
        return
    cvmfs = site.storage.cvmfs
    require(
        cvmfs is not None,
        "semantic.storage_available, semantic.extra_mounts",
        f"{p.ref}: site {site.name!r} offers no CVMFS (storage.cvmfs)",
    )
    assert cvmfs is not None
    mode = "storageClass" if cvmfs.storage_class is not None else "hostPath"
    CVMFS_MODES[mode](p, site, out)
    if p.model_repository.cvmfs:
        # HostToContainer: CVMFS repositories are automounted on first access, after the pod started.
        out.mounts.append(
            {
                "name": "cvmfs",
                "mountPath": names.CVMFS_MOUNT,
                "readOnly": True,
                "mountPropagation": "HostToContainer",
            }
        )
    for i, path in enumerate(p.model_repository.cvmfs):
        _stays_inside(p, f"modelRepository.cvmfs[{i}]", path)
    out.repositories.extend(p.model_repository.cvmfs)
    for i, extra in enumerate(p.triton.extra_mounts):
        _stays_inside(p, f"triton.extraMounts[{i}].cvmfs", extra.cvmfs)
        # A subPath of the same volume: the kubelet resolves (and so automounts) the repository
        # when the container starts, and binds only that directory at the chosen path.
        out.mounts.append(
            {
                "name": "cvmfs",
                "mountPath": extra.mount_path,
                "subPath": extra.cvmfs.removeprefix(names.CVMFS_MOUNT + "/").strip("/"),
                "readOnly": True,
            }
        )


def _pvc(p: Placement, site: Site, out: ModelSources) -> None:
    claims: list[str] = []
    for i, entry in enumerate(p.model_repository.pvc):
        require(
            entry.claim in site.storage.pvcs,
            "semantic.storage_available",
            f"modelRepository.pvc[{i}]: claim {entry.claim!r} is not offered by site {site.name!r}",
        )
        if entry.claim not in claims:
            claims.append(entry.claim)
            out.volumes.append(
                {
                    "name": f"models-pvc-{claims.index(entry.claim)}",
                    "persistentVolumeClaim": {"claimName": entry.claim, "readOnly": True},
                }
            )
        path = f"/models/pvc/{i}"
        mount: dict[str, Any] = {
            "name": f"models-pvc-{claims.index(entry.claim)}",
            "mountPath": path,
            "readOnly": True,
        }
        if entry.path.strip("/"):
            _stays_inside(p, f"modelRepository.pvc[{i}].path", entry.path)
            mount["subPath"] = entry.path.strip("/")
        out.mounts.append(mount)
        out.repositories.append(path)


def _nfs(p: Placement, site: Site, out: ModelSources) -> None:
    if not p.model_repository.nfs:
        return
    nfs = site.storage.nfs
    require(
        nfs is not None,
        "semantic.storage_available",
        f"site {site.name!r} offers no NFS export (storage.nfs)",
    )
    assert nfs is not None
    for i, rel in enumerate(p.model_repository.nfs):
        _stays_inside(p, f"modelRepository.nfs[{i}]", rel)
    out.volumes.append(
        {
            "name": "models-nfs",
            "nfs": {"server": nfs.server, "path": names.nfs_export_path(p, nfs.path), "readOnly": True},
        }
    )
    out.mounts.append({"name": "models-nfs", "mountPath": names.NFS_MOUNT, "readOnly": True})
    out.repositories.extend(f"{names.NFS_MOUNT}/{rel.strip('/')}" for rel in p.model_repository.nfs)


def _baked(p: Placement, site: Site, out: ModelSources) -> None:
    for i, path in enumerate(p.model_repository.baked):
        _stays_inside(p, f"modelRepository.baked[{i}]", path)
    out.repositories.extend(p.model_repository.baked)


# Keyed by the property names of deployment.schema.json#/$defs/modelRepository, in search order.
IN_PLACE: dict[str, Handler] = {"cvmfs": _cvmfs, "pvc": _pvc, "nfs": _nfs, "baked": _baked}


def check_lock(p: Placement, lock: Lock | None, configs: Mapping[str, str | None]) -> None:
    """Refuse to render models with artifacts without a lock, or with one that is not current.

    ``configs``: sha256 of each supplied config.pbtxt
    (:func:`pipelines.modelrepo.freshness.supplied_config_sha256`, read at the edge).

    Raises:
        RenderError: no lock (never built), or one that does not match the declared models.
    """
    built = [m for m in p.models if m.artifact is not None]
    if not built:
        return
    where = lock_path(p.source, p.name)
    if lock is None:
        raise problem(
            p,
            f"models {', '.join(m.name for m in built)} have artifacts but the model repository was never "
            f"built (no {where.name} in {where.parent.name}/): run `sonic build-models` and commit the lock file",
        )
    # The same staleness rules `sonic build-models` uses: artifacts, versions and the generated
    # config.pbtxt (batching, tensors, instances) must all match what was built.
    reasons = stale_reasons(lock, p, configs)
    if reasons or not _SNAPSHOT_ID.match(lock.snapshot):
        raise problem(
            p,
            f"the lock file {where.name} does not match the declared models ({'; '.join(reasons) or 'bad snapshot id'})"
            ": run `sonic build-models` again and commit the lock file",
            source=where,
        )


def _snapshot(p: Placement, site: Site, lock: Lock | None, out: ModelSources) -> None:
    if not any(m.artifact is not None for m in p.models):
        return
    require(
        lock is not None and bool(_SNAPSHOT_ID.match(lock.snapshot)),
        "volumes.check_lock",
        f"{p.ref}: models with artifacts need a current lock",
    )
    assert lock is not None
    snapshots = site.storage.snapshots
    s3 = site.storage.s3
    if snapshots is not None:
        out.volumes.append(
            {
                "name": "models-built",
                "persistentVolumeClaim": {"claimName": snapshots.claim, "readOnly": True},
            }
        )
        out.mounts.append(
            {
                "name": "models-built",
                "mountPath": names.SNAPSHOT_MOUNT,
                "subPath": names.snapshot_subpath(p),
                "readOnly": True,
            }
        )
        out.repositories.append(f"{names.SNAPSHOT_MOUNT}/{lock.repository_subpath}")
    elif s3 is not None:
        # Triton reads s3://https://host[:port]/bucket/path for S3-compatible stores.
        out.repositories.append(
            f"s3://{s3.endpoint.rstrip('/')}/{s3.bucket}/{names.snapshot_subpath(p)}/{lock.repository_subpath}"
        )
        out.env.extend(
            {"name": var, "valueFrom": {"secretKeyRef": {"name": s3.credentials, "key": var}}}
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        )
    else:
        require(
            False,
            "semantic.storage_available",
            f"site {site.name!r} offers no snapshot storage (storage.snapshots or storage.s3) for models with artifacts",
        )


def model_sources(p: Placement, site: Site, lock: Lock | None) -> ModelSources:
    """Every model source of ``p`` at ``site``: the built snapshot first, then the in-place ones.

    ``lock`` passed :func:`check_lock` (``render_site_deployment`` checks it first).
    """
    out = ModelSources()
    _snapshot(p, site, lock, out)
    for handler in IN_PLACE.values():
        handler(p, site, out)
    require(
        bool(out.repositories),
        "semantic.model_has_source",
        f"{p.ref}: no model repository (no artifact, no modelRepository source)",
    )
    return out


def render_volumes(p: Placement, site: Site, lock: Lock | None) -> list[dict[str, Any]]:
    """The PersistentVolumeClaims the deployment's model sources need (a CVMFS claim, or none)."""
    return model_sources(p, site, lock).objects
