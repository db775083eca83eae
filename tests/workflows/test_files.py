"""gitops/workflows/: committed = fresh render; every object valid against the Argo schemas and
round-tripping through hera's models; core objects valid for Kubernetes; deterministic.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from click.testing import CliRunner
from hera.events.models import EventSource, Sensor
from hera.workflows import CronWorkflow, WorkflowTemplate

from pipelines.cli import cli
from pipelines.config import load_tree
from pipelines.workflows.files import OUT_DIR, drift, render
from pipelines.workflows.settings import load_settings
from tests.conftest import FIXTURE, ROOT
from tests.workflows.support import (
    CRDS,
    EVENT_KINDS,
    WORKFLOW_CRDS,
    containers,
    errors,
    files,
    objects,
    settings,
    tree,
)

needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"the shared CRDs are not at {CRDS}")
# The Kubernetes versions the example sites declare, oldest and newest (kubernetes-validate ships 1.25-1.37).
K8S_VERSIONS = ("1.28.0", "1.34.0")


def test_committed_files_equal_a_fresh_render() -> None:
    # The live tree's guard (like `sonic pipelines render --check`); the other tests read the fixture tree.
    d = drift(ROOT, render(load_tree(ROOT), load_settings(ROOT)))
    assert d.clean, (
        f"gitops/workflows/ is stale (run `sonic pipelines render`): changed={d.changed} "
        f"missing={d.missing} stale={d.stale}\n{d.diff[:3000]}"
    )


def test_rendering_is_deterministic() -> None:
    assert render(tree(), settings()) == files()


def test_expected_files_and_objects() -> None:
    sites_with_deployments = sorted({p.site for p in tree().placements_at()})
    assert sorted(files()) == sorted(
        ["common.yaml", "events.yaml", "pr-validation.yaml", "rollout.yaml"]
        + [f"build-model-repository-{s}.yaml" for s in sites_with_deployments]
        + [f"scheduled-validation-{s}.yaml" for s in sites_with_deployments]
    )
    names = {(o["kind"], o["metadata"]["name"]) for _, o in objects()}
    assert {("WorkflowTemplate", "pr-validation"), ("WorkflowTemplate", "rollout"),
            ("WorkflowTemplate", "build-model-repository"), ("EventSource", "sonic-github"),
            ("Sensor", "sonic-pr-validation")} <= names  # fmt: skip
    assert {n for k, n in names if k == "CronWorkflow"} == {
        f"scheduled-validation-{s}" for s in sites_with_deployments
    }


@needs_crds
@pytest.mark.parametrize("kind", [*WORKFLOW_CRDS, *EVENT_KINDS])
def test_every_object_matches_its_schema(kind: str) -> None:
    checked = 0
    for name, obj in objects():
        if obj["kind"] != kind:
            continue
        problems = errors(obj)
        assert not problems, f"{name}: {kind} {obj['metadata']['name']}:\n" + "\n".join(problems[:10])
        checked += 1
    assert checked >= 1


@needs_crds
def test_the_schemas_reject_what_they_should() -> None:
    """Negative controls: the validators above can fail (unknown fields, wrong types, missing parts)."""
    wt = next(o for _, o in objects() if o["kind"] == "WorkflowTemplate")
    bad = copy.deepcopy(wt)
    bad["spec"]["templates"][1]["container"]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in e for e in errors(bad))
    bad = copy.deepcopy(wt)
    bad["spec"]["activeDeadlineSeconds"] = "one hour"
    assert errors(bad)
    cron = next(o for _, o in objects() if o["kind"] == "CronWorkflow")
    bad = copy.deepcopy(cron)
    bad["spec"]["schedule"] = bad["spec"].pop("schedules")[0]  # Argo Workflows v3's field, gone in v4
    assert any("schedule" in e for e in errors(bad))
    sensor = next(o for _, o in objects() if o["kind"] == "Sensor")
    bad = copy.deepcopy(sensor)
    del bad["spec"]["triggers"]
    assert errors(bad)
    bad = copy.deepcopy(sensor)
    bad["spec"]["dependencies"][0]["filters"]["data"][0]["value"] = "pull_request"
    assert errors(bad)


def test_workflow_objects_round_trip_through_hera() -> None:
    model = {"WorkflowTemplate": WorkflowTemplate, "CronWorkflow": CronWorkflow}
    checked = 0
    for name, obj in objects():
        if obj["kind"] in model:
            again = model[obj["kind"]].from_dict(copy.deepcopy(obj)).to_dict()
            assert again == obj, f"{name}: {obj['metadata']['name']} changes through hera's models"
            checked += 1
    assert checked >= 3


def test_event_objects_round_trip_through_hera() -> None:
    model = {"Sensor": Sensor, "EventSource": EventSource}
    for name, obj in objects():
        if obj["kind"] in model:
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
            again = (
                model[obj["kind"]]
                .model_validate(body)
                .model_dump(by_alias=True, exclude_none=True, mode="json")
            )
            assert again == body, f"{name}: {obj['kind']} changes through hera's models"


def _core(obj: dict[str, Any]) -> bool:
    return "/" not in obj["apiVersion"] or obj["apiVersion"].split("/")[0].endswith(".k8s.io")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_pass_kubernetes_validate_strict(version: str) -> None:
    kinds = set()
    for name, obj in objects():
        if _core(obj):
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {exc}")
            kinds.add(obj["kind"])
    assert kinds == {"Namespace", "ServiceAccount", "Secret", "Role", "RoleBinding"}


def test_kubernetes_validate_strict_rejects_a_typo() -> None:
    sa = copy.deepcopy(next(o for _, o in objects() if o["kind"] == "ServiceAccount"))
    sa["automountServiceAccountTokens"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sa, K8S_VERSIONS[0], strict=True)


def test_settings_come_from_the_repository_file() -> None:
    s = settings()
    assert s.repository == "fastmachinelearning/sonic-gitops" and s.gitops_branch == "gitops"
    images = {c["image"] for _, _, c in containers()}
    assert images == {s.image}


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def repo_copy(tmp_path: Path, example_tree: Path) -> Path:
    shutil.copy(FIXTURE / "gitops" / "repository.yaml", example_tree / "gitops" / "repository.yaml")
    return example_tree


def test_cli_render_then_check(repo_copy: Path) -> None:
    runner = CliRunner()
    stale = repo_copy / OUT_DIR / "scheduled-validation-nowhere.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: CronWorkflow\n")
    first = runner.invoke(cli, ["pipelines", "render", "--root", str(repo_copy)])
    assert first.exit_code == 0, first.output
    assert not stale.exists()  # files of sites that no longer exist are removed
    written = {p.name: p.read_text() for p in (repo_copy / OUT_DIR).iterdir()}
    assert written == files()
    assert runner.invoke(cli, ["pipelines", "render", "--check", "--root", str(repo_copy)]).exit_code == 0
    assert "nothing changed" in runner.invoke(cli, ["pipelines", "render", "--root", str(repo_copy)]).output


def test_cli_check_fails_on_a_hand_edit_and_a_missing_file(repo_copy: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["pipelines", "render", "--root", str(repo_copy)]).exit_code == 0
    target = repo_copy / OUT_DIR / "rollout.yaml"
    target.write_text(target.read_text().replace("limit: 4", "limit: 40"))
    (repo_copy / OUT_DIR / "events.yaml").unlink()
    result = runner.invoke(cli, ["pipelines", "render", "--check", "--root", str(repo_copy)])
    assert result.exit_code == 1
    assert "-      limit: 40" in result.output and "+      limit: 4" in result.output
    assert "missing: gitops/workflows/events.yaml" in result.output


def test_cli_reports_an_invalid_repository_file(repo_copy: Path) -> None:
    (repo_copy / "gitops" / "repository.yaml").write_text("url: https://github.com/a/b.git\nbranch: gitops\n")
    result = CliRunner().invoke(cli, ["pipelines", "render", "--root", str(repo_copy)])
    assert result.exit_code == 1 and "repository.yaml" in result.output and "pipelineImage" in result.output
