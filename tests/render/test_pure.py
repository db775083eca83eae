"""Rendering is pure: once its inputs are read (render/inputs.py), it touches no file, socket or clock.

The whole example tree is rendered with every way to reach the file system, the network or the
clock patched to raise; the result must equal the normal rendering, byte for byte. A test of
the guard itself shows that a renderer reading a file would fail here.
"""

from __future__ import annotations

import builtins
import io
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipelines.config.repository import load_repository
from pipelines.render import read_inputs, render_tree
from pipelines.render.inputs import RenderInputs
from tests.render.support import ROOT, tree


class Touched(AssertionError):
    """A renderer reached for the file system, the network or the clock."""


def _refuse(what: str) -> Any:
    def refused(*args: object, **kwargs: object) -> Any:
        raise Touched(f"rendering called {what}{args!r}")

    return refused


# Every entry point a renderer could use to read a file, list a folder, open a socket or read the time.
FORBIDDEN: list[tuple[Any, str]] = [
    (builtins, "open"),
    (io, "open"),
    (os, "open"),
    (os, "stat"),
    (os, "lstat"),
    (os, "listdir"),
    (os, "scandir"),
    (os, "getcwd"),
    (Path, "open"),
    (Path, "read_bytes"),
    (Path, "read_text"),
    (Path, "stat"),
    (Path, "exists"),
    (Path, "is_file"),
    (Path, "is_dir"),
    (Path, "iterdir"),
    (Path, "glob"),
    (Path, "resolve"),
    (socket, "socket"),
    (socket, "create_connection"),
    (socket, "getaddrinfo"),
    (time, "time"),
    (time, "time_ns"),
    (time, "localtime"),
    (time, "gmtime"),
]


@contextmanager
def sealed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Everything in :data:`FORBIDDEN` raises :class:`Touched` inside the block."""
    with monkeypatch.context() as m:
        for owner, name in FORBIDDEN:
            m.setattr(owner, name, _refuse(f"{getattr(owner, '__name__', owner)}.{name}"))
        yield


def _inputs() -> RenderInputs:
    return read_inputs(tree(), load_repository(ROOT))


def test_the_whole_tree_renders_without_files_network_or_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _inputs()
    expected = render_tree(tree(), inputs)
    with sealed(monkeypatch):
        files = render_tree(tree(), inputs)
    assert files == expected
    # The example tree exercises what used to be read while rendering: locks, reference files.
    assert any(d.lock is not None for d in inputs.deployments.values())
    assert any(d.references for d in inputs.deployments.values())
    assert not inputs.problems


def test_the_seal_catches_a_renderer_that_reads_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard can fail: reading a lock, a reference file or the clock while sealed raises."""
    p = tree().placements_at()[0]
    with sealed(monkeypatch):
        with pytest.raises(Touched):
            (ROOT / "README.md").read_text(encoding="utf-8")
        with pytest.raises(Touched):
            read_inputs(tree())
        with pytest.raises(Touched):
            time.time()
        with pytest.raises(Touched):
            socket.create_connection(("127.0.0.1", 9))
        with pytest.raises(Touched):
            p.source.is_file()
