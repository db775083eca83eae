"""Read a whole configuration tree and check it: every file, every rule, all problems at once.

Above :mod:`pipelines.config.tree` (layout, files to typed objects) and
:mod:`pipelines.config.semantic` (the cross-file rules, which read a Tree): the one module that
needs both, so neither imports the other.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.config.errors import ConfigError, ConfigErrors, Location
from pipelines.config.model import Deployment, Experiment, Site
from pipelines.config.semantic import check
from pipelines.config.tree import Loader, Tree, discover, relevant


def check_tree(root: Path) -> tuple[Tree, list[ConfigError]]:
    """Load every file under ``root`` and run every rule; returns the tree and all problems found.

    Files with problems are left out of the tree (but kept in ``tree.documents`` for locating).
    """
    with _gc_paused():
        return _check_tree(root, check)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading.

    Loading allocates several objects per YAML value and keeps most of them (locations), so the
    collector would rescan the growing heap again and again (~30 % of the time at 1,000
    deployments). The data is acyclic: reference counting frees what is dropped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_tree(root: Path, check: Callable[[Tree], list[ConfigError]]) -> tuple[Tree, list[ConfigError]]:
    root = root.resolve()  # like every source path (discover): renderers relate them without resolving
    files = discover(root)
    loader = Loader(root)
    sites: dict[str, Site] = {}
    experiments: dict[str, Experiment] = {}
    deployments: list[Deployment] = []
    for path, kind in files.items():
        if kind == "site" and (s := loader.site(path)):
            sites[s.name] = s
        elif kind == "experiment" and (e := loader.experiment(path)):
            experiments[e.name] = e
    for path, kind in files.items():
        if kind == "deployment" and (d := loader.deployment(path)):
            deployments.append(d)
    deployments.sort(key=lambda d: (d.experiment, d.name, str(d.source)))
    broken_sites = frozenset(p.stem for p, k in files.items() if k == "site") - set(sites)
    broken_exps = frozenset(p.parent.name for p, k in files.items() if k == "experiment") - set(experiments)
    tree = Tree(root, sites, experiments, tuple(deployments), loader.documents, broken_sites, broken_exps)
    return tree, loader.errors + check(tree)


def load_tree(root: Path, selection: set[Path] | None = None) -> Tree:
    """Load and check the whole tree under ``root``; raises ConfigErrors with all problems at once.

    Every file is read (cross-file rules such as GPU quotas need all of them), but when
    ``selection`` is given only problems in those files, and in the sites and experiments
    they refer to, are reported.
    """
    tree, errors = check_tree(root)
    if selection is not None:
        keep = relevant(tree, selection)
        errors = [e for e in errors if _resolve_display(e.location) in keep]
    if errors:
        raise ConfigErrors(errors)
    return tree


def _resolve_display(loc: Location) -> Path:
    return Path(loc.file).resolve()
