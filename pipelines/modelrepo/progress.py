"""Progress reporting for a build: byte counters for downloads and copies, and named stages.

The builder calls an :class:`Observer` from worker threads; the CLI's observer draws a rich
progress bar. Stages are announced *before* they happen (``publish`` right before the atomic
rename), which also lets tests stop a build at an exact point.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """Receives progress; every method must be safe to call from several threads at once."""

    def begin(self, key: str, label: str, total: int | None) -> None:
        """A byte-counted task starts (``total`` None when unknown yet)."""

    def total(self, key: str, total: int) -> None:
        """The task's size became known (e.g. from a Content-Length header)."""

    def advance(self, key: str, n: int) -> None:
        """``n`` more bytes were read, written or hashed."""

    def reset(self, key: str, completed: int) -> None:
        """The task starts over from ``completed`` bytes (a retried or resumed download)."""

    def end(self, key: str) -> None:
        """The task finished (successfully or not)."""

    def stage(self, name: str, detail: str = "") -> None:
        """The build is about to enter stage ``name`` (fetch, check, assemble, link, publish, lock, ...)."""


class Quiet:
    """An observer that ignores everything (library use, tests)."""

    def begin(self, key: str, label: str, total: int | None) -> None:
        pass

    def total(self, key: str, total: int) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def reset(self, key: str, completed: int) -> None:
        pass

    def end(self, key: str) -> None:
        pass

    def stage(self, name: str, detail: str = "") -> None:
        pass
