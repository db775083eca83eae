"""Fixtures for the model-repository tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.config.errors import ConfigError, ConfigErrors
from pipelines.modelrepo.build import BuildOptions, BuildResult, build
from pipelines.modelrepo.integrity import make_writable
from tests.modelrepo.support import Repo, tagger_model


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[Path]:
    store = tmp_path / "store"
    yield store
    make_writable(store)  # snapshots are stored read-only (directories 0555): let the clean-up remove them


@pytest.fixture(scope="session")
def tagger_bytes() -> bytes:
    return tagger_model()


@pytest.fixture
def run_build(repo: Repo, dest: Path) -> Callable[..., BuildResult]:
    """Build the repo's deployment into ``dest`` (keyword arguments go to BuildOptions)."""

    def run(name: str = "tagger", **options: Any) -> BuildResult:
        tree, deployment = repo.load(name)
        return build(tree, deployment, BuildOptions(dest=options.pop("dest", dest), **options))

    return run


@pytest.fixture
def build_errors(run_build: Callable[..., BuildResult]) -> Callable[..., list[ConfigError]]:
    """The located errors a build reports (the build must fail)."""

    def errors(name: str = "tagger", **options: Any) -> list[ConfigError]:
        with pytest.raises(ConfigErrors) as info:
            run_build(name, **options)
        return info.value.errors

    return errors
