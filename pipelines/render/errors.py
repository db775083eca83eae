"""Render errors: a configuration that is valid on its own but cannot be rendered yet.

Example: a deployment with model artifacts whose model repository was never built (no lock
file). Each error names the deployment file and the site, so the CLI can list them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines.config.errors import display_path
from pipelines.config.model import Placement


@dataclass(frozen=True, order=True)
class RenderProblem:
    """One reason why one deployment cannot be rendered at one site."""

    file: str
    site: str
    deployment: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.deployment} at site {self.site!r}: {self.message}"


class RenderError(Exception):
    """Raised with every problem found, so that users fix them in one go."""

    def __init__(self, problems: Iterable[RenderProblem]):
        self.problems: list[RenderProblem] = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def problem(p: Placement, message: str, source: Path | None = None) -> RenderError:
    """A :class:`RenderError` about ``p`` (located at its deployment file unless ``source`` is given)."""
    where = display_path(source if source is not None else p.source)
    return RenderError([RenderProblem(where, p.site, p.ref, message)])


class Unvalidated(AssertionError):
    """A renderer met configuration that a validation rule refuses: a bug of the caller, not of the user.

    Renderers render validated configuration (``pipelines.config.semantic``, ``schemas/``); the
    located, user-facing message is that rule's. Raised (never stripped like ``assert``) so that
    typed input from elsewhere cannot render, e.g., a path with ``..`` or a hostPath outside CVMFS.
    """


def require(condition: bool, rule: str, what: str) -> None:
    """Raise :class:`Unvalidated` unless ``condition``, which the validation ``rule`` guarantees.

    ``rule`` names where the user-facing check lives (``semantic.storage_available``,
    ``deployment.schema.json``), so the message says which check was bypassed.
    """
    if not condition:
        raise Unvalidated(f"{what} (refused by {rule}: render only validated configuration)")
