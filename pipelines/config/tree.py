"""Find, load and type every configuration file of a repository tree.

The layout says what a file is:

    gitops/sites/<site>.yaml                 a site
    experiments/<experiment>/experiment.yaml an experiment
    experiments/<experiment>/<any>.yaml      a deployment of that experiment

Sub-folders of an experiment (``models/``, ``checks/``) hold data files, not configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from pipelines.config import layout, schema
from pipelines.config.errors import ConfigError, ConfigErrors, display_path
from pipelines.config.loader import Document, load_file
from pipelines.config.model import Deployment, Experiment, Placement, Site

Kind = Literal["site", "experiment", "deployment"]
YAML_SUFFIXES = (".yaml", ".yml")


class LayoutError(Exception):
    """A path that is not part of a configuration tree (a usage error, exit code 2)."""


def find_root(path: Path) -> Path:
    """The repository root above ``path``: the nearest folder holding ``experiments/`` or ``gitops/``."""
    path = path.resolve()
    for candidate in (path, *path.parents):
        if (candidate / layout.EXPERIMENTS_DIR).is_dir() or (candidate / layout.GITOPS_DIR).is_dir():
            return candidate
    raise LayoutError(
        f"{path}: not inside a configuration tree (no {layout.EXPERIMENTS_DIR}/ or {layout.GITOPS_DIR}/ folder above it)"
    )


def classify(root: Path, path: Path) -> Kind | None:
    """What the file at ``path`` is, by where it lives; None for files that are not configuration."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return None
    if not parts or not parts[-1].endswith(YAML_SUFFIXES):
        return None
    if len(parts) == 3 and "/".join(parts[:2]) == layout.SITES_DIR:
        return "site"
    if len(parts) == 3 and parts[0] == layout.EXPERIMENTS_DIR:
        return "experiment" if Path(parts[2]).stem == "experiment" else "deployment"
    return None


def discover(root: Path) -> dict[Path, Kind]:
    """Every configuration file under ``root``, by kind."""
    found: dict[Path, Kind] = {}
    globs = [f"{layout.SITES_DIR}/*", f"{layout.EXPERIMENTS_DIR}/*/*"]
    for pattern in globs:
        for path in sorted(root.glob(pattern)):
            kind = classify(root, path)
            if kind and path.is_file():
                found[path.resolve()] = kind
    return found


def expand(root: Path, paths: Iterable[Path]) -> set[Path]:
    """The configuration files named by ``paths`` (files or folders); raises LayoutError for strays."""
    everything = discover(root)
    selected: set[Path] = set()
    top = root.resolve()
    for given in paths:
        p = given.resolve()
        if p.exists() and not p.is_relative_to(top):
            raise LayoutError(f"{given}: outside the configuration tree at {root}")
        if p.is_dir():
            selected.update(f for f in everything if f.is_relative_to(p))
        elif p in everything:
            selected.add(p)
        elif not p.exists():
            raise LayoutError(f"{given}: no such file or folder")
        else:
            raise LayoutError(
                f"{given}: not a configuration file; sites are {layout.site_file('<name>')}, experiments "
                f"{layout.experiment_file('<name>')}, deployments {layout.deployment_file('<experiment>', '<name>')}"
            )
    return selected


@dataclass(frozen=True)
class Tree:
    """Everything configured in one repository, typed and cross-checked."""

    root: Path
    sites: Mapping[str, Site]
    experiments: Mapping[str, Experiment]
    deployments: tuple[Deployment, ...]
    documents: Mapping[Path, Document] = field(repr=False)
    # Names whose file exists but has errors: rules stay quiet about them ("unknown site" would mislead).
    broken_sites: frozenset[str] = frozenset()
    broken_experiments: frozenset[str] = frozenset()

    def placements_at(self, site: str | None = None) -> list[Placement]:
        """Every (deployment, site) pair, ordered by site, experiment and name."""
        out = [p for d in self.deployments for p in d.placements if site is None or p.site == site]
        return sorted(out, key=lambda p: (p.site, p.experiment, p.name))

    def deployment(self, name: str) -> Deployment:
        """Look a deployment up by ``name`` or ``experiment/name``; KeyError with the choices otherwise."""
        matches = [d for d in self.deployments if name in (d.name, d.ref)]
        if len(matches) != 1:
            known = ", ".join(sorted(d.ref for d in self.deployments))
            why = "is ambiguous" if matches else "is not a deployment"
            raise KeyError(f"{name!r} {why}; known: {known}")
        return matches[0]


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base.get(key), value)
        return out
    return schema.clone(override)


def effective(raw: dict[str, Any], placement: dict[str, Any]) -> dict[str, Any]:
    """The deployment's raw settings at one site: placement overrides merged over the base."""
    eff = {k: schema.clone(v) for k, v in raw.items() if k != "sites"}
    for section in ("triton", "envoy", "autoscaling", "monitoring"):
        if section in placement:
            eff[section] = deep_merge(eff.get(section, {}), placement[section])
    if "replicas" in placement:  # a fixed count at this site turns autoscaling off here
        eff["replicas"] = placement["replicas"]
        eff.pop("autoscaling", None)
    return eff


class Loader:
    """Collects errors across all files while building typed objects from the valid ones."""

    def __init__(self, root: Path):
        self.root = root
        self.errors: list[ConfigError] = []
        self.documents: dict[Path, Document] = {}

    def load(self, path: Path, kind: Kind) -> Document | None:
        try:
            doc = load_file(path, display_path(path))
        except ConfigErrors as exc:
            self.errors.extend(exc.errors)
            return None
        self.documents[path] = doc  # kept even when invalid: later rules locate errors in it
        problems = schema.validate(doc, kind)
        if problems:
            self.errors.extend(problems)
            return None
        return doc

    def typed(self, doc: Document, build: Any, data: dict[str, Any]) -> Any:
        try:
            return build(data)
        except ValidationError as exc:  # only reachable if the schema and model.py disagree
            for e in exc.errors():
                self.errors.append(
                    ConfigError(
                        doc.locate(tuple(e["loc"])),
                        ".".join(map(str, e["loc"])),
                        f"internal: schema and typed model disagree: {e['msg']}",
                    )
                )
            return None

    def site(self, path: Path) -> Site | None:
        doc = self.load(path, "site")
        if doc is None:
            return None
        if doc.data["name"] != path.stem:
            self.errors.append(
                doc.error(("name",), f"site name {doc.data['name']!r} must equal the file name {path.stem!r}")
            )
        data = schema.apply_defaults(doc.data, "site")
        return self.typed(doc, lambda d: Site.model_validate({**d, "source": path}), data)  # type: ignore[no-any-return]

    def experiment(self, path: Path) -> Experiment | None:
        doc = self.load(path, "experiment")
        if doc is None:
            return None
        if doc.data["name"] != path.parent.name:
            self.errors.append(
                doc.error(
                    ("name",),
                    f"experiment name {doc.data['name']!r} must equal its folder name {path.parent.name!r}",
                )
            )
        data = schema.apply_defaults(doc.data, "experiment")
        return self.typed(doc, lambda d: Experiment.model_validate({**d, "source": path}), data)  # type: ignore[no-any-return]

    def deployment(self, path: Path) -> Deployment | None:
        doc = self.load(path, "deployment")
        if doc is None:
            return None
        raw = doc.data
        if raw["experiment"] != path.parent.name:
            self.errors.append(
                doc.error(
                    ("experiment",),
                    f"deployment belongs to experiment {raw['experiment']!r} but lives in "
                    f"{layout.experiment_dir(path.parent.name)}/: move it or fix the field",
                )
            )
        if "replicas" in raw and "autoscaling" in raw:
            self.errors.append(
                doc.error(
                    ("replicas",),
                    "set either a fixed replicas count or autoscaling, not both "
                    "(a site may still fix replicas under sites.<site>.replicas)",
                )
            )
            return None
        placements = []
        for site_name in sorted(raw["sites"]):
            placement = raw["sites"][site_name]
            where = ("sites", site_name)
            if "replicas" in placement and "autoscaling" in placement:
                self.errors.append(
                    doc.error(
                        (*where, "replicas"),
                        "set either a fixed replicas count or autoscaling at a site, not both",
                    )
                )
                continue
            eff = effective(raw, placement)
            if "autoscaling" in eff and "max" not in eff["autoscaling"]:
                self.errors.append(
                    doc.error((*where, "autoscaling"), "autoscaling needs 'max' (here or deployment-wide)")
                )
                continue
            data = schema.apply_defaults(eff, "deployment")
            extra = {"site": site_name, "namespace": placement["namespace"], "source": path}
            built = self.typed(doc, lambda d, extra=extra: Placement.model_validate({**d, **extra}), data)
            if built is not None:
                placements.append(built)
        return Deployment(
            name=raw["name"], experiment=raw["experiment"], source=path, placements=tuple(placements)
        )


def relevant(tree: Tree, selection: set[Path]) -> set[Path]:
    """The selected files plus the site and experiment files that selected deployments use."""
    keep = set(selection)
    for path in selection:
        doc = tree.documents.get(path)
        if doc is None or classify(tree.root, path) != "deployment":
            continue
        keep.add((path.parent / layout.EXPERIMENT_FILE).resolve())
        sites = doc.data.get("sites") if isinstance(doc.data, dict) else None
        for name in sites if isinstance(sites, dict) else ():
            keep.add((tree.root / layout.site_file(name)).resolve())
    return keep


def dependents(tree: Tree, changed: set[Path]) -> set[Path]:
    """Configuration files to re-check when ``changed`` files change (a pull request's diff).

    A changed deployment checks itself; a changed experiment (or any file in its folder, such
    as a model or reference file) re-checks all its deployments; a changed site re-checks every
    deployment placed there. Deleted files count too: their dependents must still be valid.
    """
    root = tree.root.resolve()
    out: set[Path] = set()
    touched_sites: set[str] = set()
    touched_experiments: set[str] = set()
    for path in changed:
        try:
            parts = path.resolve().relative_to(root).parts
        except ValueError:
            continue
        kind = classify(root, path)
        if kind is not None and path.exists():
            out.add(path.resolve())
        if kind == "site":
            touched_sites.add(Path(parts[-1]).stem)
        elif (
            parts[:1] == (layout.EXPERIMENTS_DIR,)
            and len(parts) >= 2
            and (kind == "experiment" or len(parts) > 3)
        ):
            touched_experiments.add(parts[1])
    for path, doc in tree.documents.items():
        if classify(root, path) != "deployment":
            continue
        sites = doc.data.get("sites")
        if path.parent.name in touched_experiments or (
            isinstance(sites, dict) and touched_sites & set(sites)
        ):
            out.add(path)
    return out
