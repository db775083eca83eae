"""A committed lock is current exactly when a build would write the same one."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.config.checked import check_tree
from pipelines.modelrepo.build import BuildResult
from pipelines.modelrepo.freshness import stale_reasons, supplied_config_sha256
from pipelines.modelrepo.lock import read_lock
from tests.conftest import ROOT
from tests.modelrepo.support import Repo, tagger_entry


def test_the_committed_example_lock_is_current() -> None:
    tree, _ = check_tree(ROOT)
    (p,) = tree.deployment("cms/minimal").placements
    lock = read_lock(p.source, p.name)
    assert lock is not None
    assert stale_reasons(lock, p, supplied_config_sha256(p)) == []


def test_declaration_changes_make_the_lock_stale(
    repo: Repo, tagger_bytes: bytes, run_build: Callable[..., BuildResult]
) -> None:
    repo.write("experiments/demo/models/tagger.onnx", tagger_bytes)
    repo.deployment([tagger_entry(tagger_bytes)])
    lock = run_build().lock
    assert lock is not None
    _, d = repo.load()
    assert stale_reasons(lock, d.placements[0], {}) == []

    repo.deployment(
        [tagger_entry(tagger_bytes, dynamicBatching={"preferredBatchSize": [2]}, versions=[1, 2])]
    )
    _, d = repo.load()
    assert stale_reasons(lock, d.placements[0], {}) == [
        "model 'tagger': versions changed",
        "model 'tagger': its config.pbtxt changed (batching, tensors, instances, ...)",
    ]
    repo.deployment([tagger_entry(tagger_bytes, name="other")])
    _, d = repo.load()
    assert stale_reasons(lock, d.placements[0], {}) == [
        "model 'tagger' is locked but not declared with an artifact",
        "model 'other' is declared but not in the lock",
    ]
