"""The GitHub Actions CI (.github/workflows/ci.yaml), read as data: it runs what .ci/run runs,
builds and publishes the pipeline image from tags only, and runs the kind end-to-end test.

Nothing here runs GitHub Actions; the job definitions are checked against the files they name.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SHARED
from tests.workflows.support import live_settings, repo_file


def ci() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(repo_file(".github/workflows/ci.yaml").read_text())
    return workflow


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_ci_runs_what_dot_ci_run_runs() -> None:
    # Issue 10.8: CI keeps running .ci/run (make test: every test), now on GitHub Actions too;
    # issue 13.8: lint first, tests with coverage, the control-plane tools built (and cached).
    lines = [ln for ln in repo_file(".ci/run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[-2:] == [
        "make lint",
        'make test PYTEST_ARGS="--cov=pipelines --cov-branch --cov-report=term:skip-covered"',
    ]
    assert "time ./scripts/controlplane-tools.sh" in lines
    test = ci()["jobs"]["test"]
    assert any(str(s.get("uses", "")).startswith("actions/setup-go@") for s in test["steps"])
    cache = next(s for s in test["steps"] if str(s.get("uses", "")).startswith("actions/cache@"))
    assert cache["with"]["path"] == "~/.cache/sonic-gitops/controlplane"
    assert "sonic-gitops/.ci/run" in runs(test)
    # The tests read ../shared/crds beside the clone: the checkout and the CRDs are siblings.
    checkout = next(s for s in test["steps"] if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["path"] == "sonic-gitops"
    assert "sonic-gitops/scripts/fetch_crds.py shared/crds" in runs(test)
    assert "apt-get install" in runs(test) and "prometheus" in runs(test)  # promtool for the tests
    triggers = ci().get(True) or ci()["on"]  # YAML 1.1 reads the bare key `on` as true
    assert {"push", "pull_request"} <= set(triggers)


def test_the_image_is_built_from_the_dockerfile_and_pushed_on_tags_only() -> None:
    image = ci()["jobs"]["image"]
    build = next(s for s in image["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@"))
    assert build["with"]["context"] == "."
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    login = next(s for s in image["steps"] if str(s.get("uses", "")).startswith("docker/login-action@"))
    assert login["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    # The name comes from gitops/repository.yaml (what the rendered objects run), the base from
    # the Dockerfile's ARG, pinned by the digest it resolves to and recorded as a label.
    script = runs(image)
    assert "sed -n 's/^pipelineImage: *//p' gitops/repository.yaml" in script
    assert "sed -n 's/^ARG BASE=//p' Dockerfile" in script
    assert build["with"]["build-args"] == "BASE=${{ steps.base.outputs.pinned }}"
    assert "imagetools inspect" in script
    assert live_settings().image.split(":")[-1] in repo_file("gitops/repository.yaml").read_text()
    assert image["needs"] == "test"


def test_the_e2e_job_runs_make_e2e_on_kind_and_may_not_skip() -> None:
    e2e = ci()["jobs"]["e2e"]
    make = next(s for s in e2e["steps"] if s.get("run") == "make e2e")
    assert make["env"] == {"SONIC_E2E_REQUIRED": "1"}
    assert any(str(s.get("uses", "")).startswith("helm/kind-action@") for s in e2e["steps"])
    makefile = repo_file("Makefile").read_text()
    assert "$(PY) -m pytest -m kind tests/e2e -rs" in makefile
    assert "SONIC_E2E_REQUIRED" in repo_file("tests/e2e/test_kind.py").read_text()


@pytest.mark.skipif(not (SHARED / "crds").is_dir(), reason=f"no CRDs at {SHARED / 'crds'}")
def test_fetched_crds_are_the_ones_the_tests_use() -> None:
    """scripts/fetch_crds.py pins each file by git blob id; the ids match the files used here."""
    spec = importlib.util.spec_from_file_location("fetch_crds", repo_file("scripts/fetch_crds.py"))
    assert spec is not None and spec.loader is not None
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    listed = {name for name, *_ in fetch.FILES}
    present = {
        str(p.relative_to(SHARED / "crds"))
        for p in Path(SHARED / "crds").rglob("*")
        if p.suffix in (".yaml", ".json")
    }
    assert listed == present
    for name, _, _, _, blob in fetch.FILES:
        assert fetch.blob_id((SHARED / "crds" / name).read_bytes()) == blob, name
    assert fetch.blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


def test_docs_show_the_executor_configuration_the_tests_run_with() -> None:
    # The control-plane tier runs the Argo controller with pipelines.workflows.controller's
    # executor settings; site admins copy them from docs/workflows.md: the two must not drift.
    from pipelines.workflows.controller import configmap_data

    doc = repo_file("docs/workflows.md").read_text()
    block = doc.split("   data:\n     executor: |\n", 1)[1].split("   ```", 1)[0]
    shown = "\n".join(line[7:] for line in block.splitlines())
    assert yaml.safe_load(shown) == yaml.safe_load(configmap_data()["executor"])
