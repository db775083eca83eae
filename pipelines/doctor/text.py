"""Wording shared by the checks: how a failure names the site file and the commands that fix it."""

from __future__ import annotations

import shlex

from pipelines.config.errors import display_path
from pipelines.config.model import Site


def site_file(site: Site) -> str:
    """The site's file as the admin would type it (relative to the working directory)."""
    return display_path(site.source)


def command(*words: str) -> str:
    """A shell command line, each word quoted where the shell needs it."""
    return " ".join(shlex.quote(w) for w in words)


def listing(names: list[str] | tuple[str, ...], empty: str = "none") -> str:
    return ", ".join(names) if names else empty
