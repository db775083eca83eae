"""The rollout's steps as the workflow runs them, one `sonic rollout` command after another:
a real bare repository for the GitOps branch, a local Kubernetes-API server for Argo CD.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

from click.testing import CliRunner

from pipelines.cli import cli
from tests.conftest import FIXTURE
from tests.ops.conftest import Origin, git
from tests.ops.fakes import Request, Response, application, kube_status, kubeconfig, serve

SITE, DEPLOYMENT = "uchicago", "cms/minimal"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def target(tmp_path: Path) -> dict[str, str]:
    outputs = tmp_path / "target"
    code, output = run(
        "rollout",
        "target",
        "--site",
        SITE,
        "--deployment",
        DEPLOYMENT,
        "--root",
        str(FIXTURE),
        "--outputs",
        str(outputs),
    )
    assert code == 0, output
    return {p.name: p.read_text() for p in outputs.iterdir()}


def test_target_names_what_the_renderers_name(tmp_path: Path) -> None:
    t = target(tmp_path)
    assert t == {
        "application": "uchicago-cms-minimal",
        "argocd-namespace": "argocd",
        "argocd-remote": "false",  # Argo CD runs in uchicago's own cluster
        "argocd-kubeconfig": "",
        "endpoint": "minimal-envoy.cms-af.svc:8001",
        "path": "gitops/rendered/uchicago/cms/minimal",
        "deployment": "cms/minimal",
    }
    # The ApplicationSet generates that Application from that directory's application.json
    # (tests/render/test_argocd.py runs the generator over the whole tree).
    assert json.loads((FIXTURE / t["path"] / "application.json").read_text())["name"] == t["application"]
    appset = (FIXTURE / "gitops" / "argocd" / SITE / "applicationset.yaml").read_text()
    assert "gitops/rendered/uchicago/*/*/application.json" in appset


def test_target_at_a_site_managed_by_a_central_argocd(tmp_path: Path, example_tree: Path) -> None:
    # Issue 10.5: anvil's Applications live in the Argo CD at Geddes (gitops/sites/anvil.yaml,
    # rollout.argocdKubeconfig): the rollout runs at anvil and reads them through the kubeconfig
    # the wait-remote step mounts; verify still uses anvil's in-cluster Service.
    outputs = tmp_path / "anvil"
    code, output = run("rollout", "target", "--site", "anvil", "--deployment", "cms/particlenet-anvil",
                       "--root", str(FIXTURE), "--outputs", str(outputs))  # fmt: skip
    assert code == 0, output
    t = {p.name: p.read_text() for p in outputs.iterdir()}
    assert t["argocd-remote"] == "true"
    assert t["argocd-kubeconfig"] == "/var/run/secrets/sonic/argocd-kubeconfig/sonic-argocd-geddes/kubeconfig"
    assert t["endpoint"] == "particlenet-anvil-envoy.cms.svc:8001"
    # The other topology: the rollout runs beside the central Argo CD (in-cluster wait) and
    # reaches anvil's deployment through its ingress, over TLS.
    site = example_tree / "gitops" / "sites" / "anvil.yaml"
    text = site.read_text().replace("  argocdKubeconfig: {name: sonic-argocd-geddes, key: kubeconfig}\n",
                                    "  verifyThrough: ingress\n")  # fmt: skip
    site.write_text(text)
    outputs = tmp_path / "anvil-ingress"
    code, output = run("rollout", "target", "--site", "anvil", "--deployment", "cms/particlenet-anvil",
                       "--root", str(example_tree), "--outputs", str(outputs))  # fmt: skip
    assert code == 0, output
    t = {p.name: p.read_text() for p in outputs.iterdir()}
    assert t["argocd-remote"] == "false" and t["argocd-kubeconfig"] == ""
    assert t["endpoint"] == "grpcs://cms-sonic.anvilcloud.rcac.purdue.edu:443"


def test_target_refuses_a_deployment_not_at_the_site() -> None:
    code, output = run(
        "rollout", "target", "--site", "geddes", "--deployment", DEPLOYMENT, "--root", str(FIXTURE)
    )
    assert code == 1 and "not placed at site 'geddes'" in output


def commit(
    origin: Origin, source: Path, tmp_path: Path, name: str, workflow: str = "rollout-x1"
) -> dict[str, str]:
    outputs = tmp_path / f"{name}-out"
    code, output = run(
        "rollout", "commit", "--source", str(source), "--path", "gitops/rendered/uchicago/cms/minimal",
        "--site", SITE, "--deployment", DEPLOYMENT, "--source-revision", "a" * 40, "--workflow", workflow,
        "--remote", origin.url, "--branch", "gitops", "--workdir", str(tmp_path / name), "--outputs", str(outputs),
    )  # fmt: skip
    assert code == 0, output
    return {p.name: p.read_text() for p in outputs.iterdir()}


def source_checkout(tmp_path: Path) -> Path:
    """A checkout holding the committed rendered tree of the repository under test."""
    source = tmp_path / "checkout"
    shutil.copytree(FIXTURE / "gitops" / "rendered" / SITE, source / "gitops" / "rendered" / SITE)
    return source


def test_commit_publishes_the_rendered_directory_with_provenance(origin: Origin, tmp_path: Path) -> None:
    source = source_checkout(tmp_path)
    first = commit(origin, source, tmp_path, "w1")
    assert first["changed"] == "true" and first["commit"] == origin.rev("refs/heads/gitops")
    files = git(origin.bare, "ls-tree", "-r", "--name-only", "gitops").splitlines()
    expected = sorted(
        p.relative_to(source).as_posix() for p in (source / "gitops/rendered/uchicago/cms/minimal").iterdir()
    )
    assert files == expected
    message = git(origin.bare, "log", "-1", "--format=%B", "gitops")
    assert message.splitlines()[0] == "rollout: cms/minimal at uchicago"
    assert f"Source-Revision: {'a' * 40}" in message and "Workflow: rollout-x1" in message

    # Another run with nothing new commits nothing (and so will never revert someone else's commit).
    second = commit(origin, source, tmp_path, "w2", workflow="rollout-y2")
    assert second == {"changed": "false", "commit": first["commit"]}


def test_degraded_rollout_is_reverted_and_the_workflow_fails(origin: Origin, tmp_path: Path) -> None:
    source = source_checkout(tmp_path)
    commit(origin, source, tmp_path, "w1")
    deployment = source / "gitops/rendered/uchicago/cms/minimal/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("replicas: 2", "replicas: 20"))
    rolled = commit(origin, source, tmp_path, "w2")
    good = git(origin.bare, "rev-parse", "gitops~1")

    def argocd_api(req: Request) -> Response:
        if req.path.startswith(
            "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/uchicago-cms-minimal"
        ):
            return Response(
                200,
                application(
                    "uchicago-cms-minimal",
                    health="Degraded",
                    revision=rolled["commit"],
                    message="0/20 pods ready",
                ),
            )
        return Response(404, kube_status(404, "NotFound", "no"))

    with serve(argocd_api) as server:
        cfg = tmp_path / "kubeconfig"
        cfg.write_text(kubeconfig(server.url))
        code, output = run(
            "rollout", "wait", "--application", "uchicago-cms-minimal", "--revision", rolled["commit"],
            "--interval", "0.01", "--kubeconfig", str(cfg),
        )  # fmt: skip
    assert code == 1 and "Degraded" in output

    # The workflow's revert step: runs because `wait` failed; fails the workflow with the reason.
    code, output = run(
        "rollout", "revert", "--commit", rolled["commit"], "--remote", origin.url, "--branch", "gitops",
        "--workdir", str(tmp_path / "w3"), "--report-file", str(tmp_path / "no-report.json"),
    )  # fmt: skip
    assert code == 1
    assert "reverted" in output and "did not become Synced and Healthy" in output
    assert git(origin.bare, "rev-parse", "gitops^{tree}") == git(origin.bare, "rev-parse", f"{good}^{{tree}}")
    assert git(origin.bare, "log", "-1", "--format=%s", "gitops").startswith(
        f"revert rollout {rolled['commit'][:12]}"
    )


def test_verify_keeps_the_check_report_and_revert_fails_with_it(origin: Origin, tmp_path: Path) -> None:
    source = source_checkout(tmp_path)
    rolled = commit(origin, source, tmp_path, "w1")
    with socket.socket() as s:  # a port nobody listens on: the deployment does not answer
        s.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"
    report = tmp_path / "check-report.json"
    code, output = run(
        "rollout", "verify", DEPLOYMENT, "--site", SITE, "--endpoint", endpoint, "--report-file", str(report),
        "--token-file", str(tmp_path / "absent-optional-secret"), "--timeout", "60",
        "--prometheus", f"http://{endpoint}",
    )  # fmt: skip
    assert code == 1, output
    kept = json.loads(report.read_text())
    assert kept["deployment"] == DEPLOYMENT and not kept["passed"]
    assert {c["check"] for c in kept["checks"] if c["status"] == "fail"} >= {"server.live"}

    code, output = run(
        "rollout", "revert", "--commit", rolled["commit"], "--remote", origin.url, "--branch", "gitops",
        "--workdir", str(tmp_path / "w2"), "--report-file", str(report),
    )  # fmt: skip
    assert code == 1 and "sonic check failed: server.live" in output and "reverted" in output
    assert '"passed": false' in output  # the report is what the workflow fails with
    assert git(origin.bare, "ls-tree", "-r", "--name-only", "gitops") == ""  # back to before the rollout
