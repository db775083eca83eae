"""``sonic validate`` and ``sonic schema-docs`` as users and CI call them."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import cli
from tests.config.support import SONIC


def invoke(tree: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.chdir(tree)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


BROKEN_ATLAS = """\
name: broken
experiment: atlas
sites:
  uchicago: {namespace: atlas-af}
models:
  - name: m
    platform: onnx
"""


# --- exit codes ----------------------------------------------------------------------------------


def test_valid_tree_exits_0(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(example_tree, monkeypatch, "validate")
    assert result.exit_code == 0
    assert result.stdout.startswith("ok: ") and "deployments" in result.stdout


def test_invalid_tree_exits_1_with_located_errors(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example_tree / "experiments" / "atlas" / "broken.yaml").write_text(BROKEN_ATLAS)
    result = invoke(example_tree, monkeypatch, "validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "experiments/atlas/broken.yaml:7:15: models[0].platform: 'onnx' is not one of: onnxruntime_onnx, "
        "pytorch_libtorch, tensorrt_plan, tensorflow_savedmodel, python (did you mean 'onnxruntime_onnx'?)"
    ]
    assert "1 error in" in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["validate", "experiments/cms/nope.yaml"], "no such file or folder"),
        (["validate", "experiments/cms/models/btag_mini/model.onnx"], "not a configuration file"),
        (["validate", "experiments", "{outside}"], "outside the configuration tree"),
        (["validate", "{outside}"], "not inside a configuration tree"),
        (["validate", "--format", "xml"], "Invalid value for '--format'"),
        (["validate", "--changed-against", "HEAD"], "needs a git repository"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], fragment: str, example_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.yaml").write_text("a: 1\n")
    args = [a.replace("{outside}", str(outside / "x.yaml")) for a in args]
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # the tmp tree is no git repository
    result = invoke(example_tree, monkeypatch, *args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


# --- output formats and selection -------------------------------------------------------------------


def test_json_output_valid(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(example_tree, monkeypatch, "validate", "--format", "json")
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert body["valid"] is True and body["errors"] == []
    assert body["files"] == len(body["checked"]) >= 13
    assert body["deployments"] >= 6
    assert "experiments/cms/minimal.yaml" in body["checked"]


def test_json_output_invalid(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (example_tree / "experiments" / "atlas" / "broken.yaml").write_text(BROKEN_ATLAS)
    edit(example_tree / "gitops" / "sites" / "geddes.yaml", 'minVersion: "1.29"', "minVersion: 1.29")
    result = invoke(example_tree, monkeypatch, "validate", "--format", "json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)  # nothing but the JSON document on stdout
    assert body["valid"] is False
    assert set(body) == {"valid", "files", "deployments", "checked", "errors", "warnings"}
    assert body["warnings"] == []
    errors: list[dict[str, Any]] = body["errors"]
    assert [(e["file"], e["path"]) for e in errors] == [
        ("experiments/atlas/broken.yaml", "models[0].platform"),
        ("gitops/sites/geddes.yaml", "kubernetes.minVersion"),
    ]
    for e in errors:
        assert set(e) == {"file", "line", "column", "path", "message"}
        assert isinstance(e["line"], int) and e["line"] > 0 and isinstance(e["column"], int)


def test_selection_reports_only_selected_files_and_what_they_use(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example_tree / "experiments" / "atlas" / "broken.yaml").write_text(BROKEN_ATLAS)
    assert invoke(example_tree, monkeypatch, "validate", "experiments/icecube").exit_code == 0
    edit(
        example_tree / "gitops" / "sites" / "nautilus.yaml",
        "icecube: {namespaces: [icecube-sonic], gpuQuota: 8}",
        "icecube: {namespaces: [icecube-sonic], gpuQuota: 2}",
    )
    result = invoke(example_tree, monkeypatch, "validate", "experiments/icecube/cnn-classifier.yaml")
    assert result.exit_code == 1
    assert "experiments/icecube/cnn-classifier.yaml" in result.stdout and "GPU quota" in result.stdout
    assert "broken.yaml" not in result.stdout


# --- --changed-against with a real git repository ----------------------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    ident = [
        "-c",
        "user.name=sonic-test",
        "-c",
        "user.email=sonic-test@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    proc = subprocess.run(
        ["git", *ident, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout


@pytest.fixture
def git_tree(example_tree: Path) -> Path:
    """The example tree, plus a deployment broken since before the pull request, committed to git."""
    (example_tree / "experiments" / "atlas" / "broken.yaml").write_text(BROKEN_ATLAS)
    git(example_tree, "init", "-q", "-b", "main")
    git(example_tree, "add", "-A")
    git(example_tree, "commit", "-q", "-m", "base")
    return example_tree


def changed(tree: Path, monkeypatch: pytest.MonkeyPatch, base: str = "main") -> tuple[int, dict[str, Any]]:
    result = invoke(tree, monkeypatch, "validate", "--changed-against", base, "--format", "json")
    return result.exit_code, json.loads(result.stdout)


@needs_git
def test_changed_site_rechecks_every_deployment_placed_there(
    git_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(
        git_tree / "gitops" / "sites" / "nautilus.yaml",
        "shared by many experiments",
        "shared by many sciences",
    )

    code, body = changed(git_tree, monkeypatch)

    assert code == 0, body["errors"]
    assert body["checked"] == [
        "experiments/atlas/traccc.yaml",
        "experiments/cms/particlenet.yaml",
        "experiments/icecube/cnn-classifier.yaml",
        "gitops/sites/nautilus.yaml",
    ]
    assert body["deployments"] == 3  # every deployment at nautilus; broken.yaml (uchicago) is not looked at


@needs_git
def test_a_broken_change_is_reported_and_old_breakage_elsewhere_is_not(
    git_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = git_tree / "gitops" / "sites" / "nautilus.yaml"
    edit(site, 'minVersion: "1.30"', "minVersion: 1.30")  # the site itself breaks
    (git_tree / "experiments" / "cms" / "new.yaml").write_text("name: new\n")  # new, untracked, broken

    code, body = changed(git_tree, monkeypatch)

    assert code == 1
    reported = {(e["file"], e["path"]) for e in body["errors"]}
    assert ("gitops/sites/nautilus.yaml", "kubernetes.minVersion") in reported
    assert ("experiments/cms/new.yaml", "experiment") in reported
    assert not any(f == "experiments/atlas/broken.yaml" for f, _ in reported)
    # ...and without --changed-against the old breakage is there all along.
    assert "experiments/atlas/broken.yaml" in invoke(git_tree, monkeypatch, "validate").stdout


@needs_git
def test_a_site_change_that_breaks_a_deployment_reports_the_deployment(
    git_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(git_tree / "gitops" / "sites" / "nautilus.yaml", "  L40:\n    products: [NVIDIA-L40]\n", "")
    git(git_tree, "commit", "-q", "-am", "drop L40")  # committed on the pull request's branch

    code, body = changed(git_tree, monkeypatch, base="HEAD~1")

    assert code == 1
    assert [(e["file"], e["path"]) for e in body["errors"]] == [
        ("experiments/icecube/cnn-classifier.yaml", "triton.gpu.class")
    ]


@needs_git
def test_changed_data_file_rechecks_the_experiment(git_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (git_tree / "experiments" / "cms" / "checks" / "btag_mini_inputs.npz").unlink()
    code, body = changed(git_tree, monkeypatch)
    assert code == 1
    assert {e["file"] for e in body["errors"]} == {"experiments/cms/minimal.yaml"}
    assert "experiments/cms/particlenet.yaml" in body["checked"]
    assert not any(f.startswith("experiments/atlas/") for f in body["checked"])


@needs_git
def test_tree_in_a_subfolder_of_the_repository(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = example_tree.parent  # the git repository holds the tree in repo/
    git(top, "init", "-q", "-b", "main")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "base")
    (example_tree / "experiments" / "cms" / "new.yaml").write_text("name: new\n")

    code, body = changed(example_tree, monkeypatch)

    assert code == 1
    assert body["checked"] == ["experiments/cms/new.yaml"]


@needs_git
def test_unknown_base_ref_is_a_usage_error(git_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(git_tree, monkeypatch, "validate", "--changed-against", "no-such-branch")
    assert result.exit_code == 2
    assert "'no-such-branch' is not a commit" in result.stderr


# --- never a traceback ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_in_a_deployment_never_give_a_traceback(
    data: bytes, example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example_tree / "experiments" / "cms" / "fuzz.yaml").write_bytes(data)
    result = invoke(example_tree, monkeypatch, "validate")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout.startswith("experiments/cms/fuzz.yaml:")


def test_random_bytes_through_the_console_script(example_tree: Path) -> None:
    rng = random.Random(20240601)
    for name, size in (("fuzz.yaml", 2000), ("experiment.yaml", 300)):
        (example_tree / "experiments" / "cms" / name).write_bytes(
            bytes(rng.randrange(256) for _ in range(size))
        )
    (example_tree / "gitops" / "sites" / "geddes.yaml").write_bytes(
        b"\xff\xfe" + "name: g\n".encode("utf-16-le")
    )
    proc = subprocess.run([*SONIC, "validate"], cwd=example_tree, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    files = {line.split(":", 1)[0] for line in proc.stdout.splitlines()}
    assert {
        "experiments/cms/fuzz.yaml",
        "experiments/cms/experiment.yaml",
        "gitops/sites/geddes.yaml",
    } <= files


# --- sonic schema-docs -------------------------------------------------------------------------------


def test_schema_docs_check_passes_on_the_committed_reference(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(repo_root, monkeypatch, "schema-docs", "--check")
    assert result.exit_code == 0, (
        result.output + "\nrun `sonic schema-docs` and commit docs/config-reference.md"
    )


def test_schema_docs_writes_then_detects_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ref.md"
    assert invoke(tmp_path, monkeypatch, "schema-docs", "--check", "--output", str(out)).exit_code == 1
    assert invoke(tmp_path, monkeypatch, "schema-docs", "--output", str(out)).exit_code == 0
    assert invoke(tmp_path, monkeypatch, "schema-docs", "--check", "--output", str(out)).exit_code == 0
    out.write_text(
        out.read_text().replace(
            "| `envoy.retries.attempts` | integer | `2` |", "| `envoy.retries.attempts` | integer | `3` |"
        )
    )
    result = invoke(tmp_path, monkeypatch, "schema-docs", "--check", "--output", str(out))
    assert result.exit_code == 1
    assert "-| `envoy.retries.attempts` | integer | `3` |" in result.stdout
    assert "+| `envoy.retries.attempts` | integer | `2` |" in result.stdout
