"""Configuration: safe YAML loading, JSON-Schema validation, typed objects, cross-file rules.

Entry point: :func:`load_tree`, which returns a fully checked :class:`Tree` or raises
:class:`ConfigErrors` listing every problem as ``file:line:col: path: message``.
"""

from pipelines.config.checked import load_tree
from pipelines.config.errors import ConfigError, ConfigErrors, Location
from pipelines.config.model import Deployment, Experiment, Placement, Site
from pipelines.config.tree import LayoutError, Tree, expand, find_root

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "Deployment",
    "Experiment",
    "LayoutError",
    "Location",
    "Placement",
    "Site",
    "Tree",
    "expand",
    "find_root",
    "load_tree",
]
