"""In-place model repositories (CVMFS, PVC, NFS, baked into the image): verified where visible.

Nothing is copied from them: Triton reads them where they are. What can be checked here is
checked; what cannot is reported as "not verifiable here", which is not an error (the live
checks of ``sonic check`` see them in the cluster).

* CVMFS, when the path is mounted on this machine (under ``cvmfs_root``): every
  ``<repo>/<model>/config.pbtxt`` parses and names its own directory; each declared model that has
  no artifact is found, with its declared versions, and its config agrees with the declaration.
* PVC, NFS, baked image: not reachable from a build machine; always "not verifiable here".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.errors import ConfigError, ConfigErrors, Location, display_path
from pipelines.config.model import Model, Placement
from pipelines.config.modelconfig.configcheck import compare_declared
from pipelines.config.modelconfig.pbtxt import find_line, parse
from pipelines.config.modelconfig.where import Where


@dataclass(frozen=True)
class InPlaceStatus:
    """What was found out about one in-place repository."""

    kind: str  # cvmfs, pvc, nfs, baked
    location: str
    verified: bool
    detail: str


@dataclass(frozen=True)
class InPlaceModel:
    """A declared model without an artifact, expected in one of the in-place repositories."""

    model: Model
    explicit: frozenset[str]  # keys written in its YAML entry
    where: Where


def _configs(repo: Path) -> tuple[dict[str, tuple[mc.ModelConfig, str]], list[ConfigError]]:
    """Parse every ``<model>/config.pbtxt`` of ``repo``: {model dir: (config, display)} and errors."""
    found: dict[str, tuple[mc.ModelConfig, str]] = {}
    errors: list[ConfigError] = []
    for model_dir in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cfg_file = model_dir / "config.pbtxt"
        if not cfg_file.is_file():
            continue
        display = display_path(cfg_file)
        try:
            text = cfg_file.read_text(encoding="utf-8")
            cfg = parse(text, display)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ConfigError(Location(display), "config.pbtxt", f"cannot read: {exc}"))
            continue
        if cfg.name and cfg.name != model_dir.name:
            line = find_line(text, "name:")
            errors.append(
                ConfigError(
                    Location(display, line, 1 if line else 0),
                    "name",
                    f"config names the model {cfg.name!r} but it is in directory {model_dir.name!r}: Triton refuses it",
                )
            )
        found[model_dir.name] = (cfg, display)
    return found, errors


def verify_in_place(
    p: Placement,
    models: Sequence[InPlaceModel],
    cvmfs_root: Path = Path("/"),
) -> tuple[list[InPlaceStatus], list[ConfigError]]:
    """Statuses of ``p``'s in-place repositories and the errors found in the visible ones."""
    statuses: list[InPlaceStatus] = []
    errors: list[ConfigError] = []
    mounted: list[tuple[Path, dict[str, tuple[mc.ModelConfig, str]]]] = []
    repo = p.model_repository
    for path in repo.cvmfs:
        local = cvmfs_root / path.lstrip("/")
        if not local.is_dir():
            statuses.append(InPlaceStatus("cvmfs", path, False, "not verifiable here (not mounted)"))
            continue
        configs, errs = _configs(local)
        errors.extend(errs)
        mounted.append((local, configs))
        detail = f"{len(configs)} model config{'s' if len(configs) != 1 else ''} parsed"
        statuses.append(
            InPlaceStatus("cvmfs", path, True, detail + (f", {len(errs)} with errors" if errs else ""))
        )
    for pvc in repo.pvc:
        statuses.append(
            InPlaceStatus("pvc", f"{pvc.claim}:/{pvc.path}", False, "not verifiable here (in-cluster volume)")
        )
    for nfs in repo.nfs:
        statuses.append(InPlaceStatus("nfs", nfs, False, "not verifiable here (site NFS export)"))
    for baked in repo.baked:
        statuses.append(
            InPlaceStatus(
                "baked",
                f"{p.triton.image}:{baked}",
                False,
                "not verifiable here (inside the image; checked live)",
            )
        )
    everything_visible = (
        bool(repo.cvmfs) and len(mounted) == len(repo.cvmfs) and not (repo.pvc or repo.nfs or repo.baked)
    )
    for m in models:
        hit = next(
            ((root, configs[m.model.name]) for root, configs in mounted if m.model.name in configs), None
        )
        if hit is None:
            if everything_visible:
                looked = ", ".join(repo.cvmfs)
                errors.append(
                    m.where.error("name", f"not found in any in-place repository (looked in {looked})")
                )
            continue
        root, (cfg, display) = hit
        errors.extend(compare_declared(m.model, m.explicit, cfg, m.where, display))
        model_dir = root / m.model.name
        present = sorted(int(d.name) for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit())
        for v in m.model.versions:
            if v not in present:
                have = ", ".join(map(str, present)) or "none"
                errors.append(
                    m.where.error(
                        "versions",
                        f"version {v} is declared but {display_path(model_dir)} has no directory {v} (versions there: {have})",
                    )
                )
    return statuses, errors
