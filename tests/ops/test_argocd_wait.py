"""The rollout's Argo CD wait, through the official kubernetes client, against a local server that
speaks the Kubernetes API wire format for applications.argoproj.io (no API server can run here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client as k8s

from pipelines.cli import cli
from pipelines.ops import argocd_wait
from tests.ops.conftest import Origin
from tests.ops.fakes import Request, Response, application, kube_status, kubeconfig, serve

APP = "uchicago-cms-minimal"
PATH = f"/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/{APP}"
REV = "3f5c2a9d8e7b6a5c4d3e2f1a0b9c8d7e6f5a4b3c"
OLD = "0" * 40


class Sequence:
    """Answers GETs of the Application from a script; the last answer repeats."""

    def __init__(self, answers: list[Response]):
        self.answers = answers
        self.calls = 0

    def __call__(self, req: Request) -> Response:
        if req.method != "GET" or req.path.split("?")[0] != PATH:
            return Response(404, kube_status(404, "NotFound", f"unexpected {req.method} {req.path}"))
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


def ok(**kw: Any) -> Response:
    return Response(200, application(APP, **kw))


def api_for(url: str) -> k8s.CustomObjectsApi:
    cfg = k8s.Configuration()
    cfg.host = url
    return k8s.CustomObjectsApi(k8s.ApiClient(cfg))


@pytest.fixture
def fast() -> Iterator[dict[str, Any]]:
    yield {"timeout": 5.0, "interval": 0.01}


def wait(
    answers: list[Response], revision: str | None = REV, **kw: Any
) -> tuple[argocd_wait.WaitResult, Sequence, list[Request]]:
    seq = Sequence(answers)
    with serve(seq) as server:
        result = argocd_wait.wait_for_application(api_for(server.url), "argocd", APP, revision=revision, **kw)
        return result, seq, server.requests


def test_synced_and_healthy_at_our_revision_succeeds(fast: dict[str, Any]) -> None:
    result, seq, requests = wait([ok(revision=REV)], **fast)
    assert result.verdict == "healthy" and result.ok and seq.calls == 1
    # The real client's request: GET on the namespaced custom object, JSON accepted.
    assert requests[0].method == "GET" and requests[0].path == PATH
    assert "application/json" in requests[0].headers["accept"]


def test_out_of_sync_keeps_waiting_until_synced(fast: dict[str, Any]) -> None:
    answers = [
        ok(sync="OutOfSync", health="Healthy", revision=REV, operation=None),
        ok(sync="OutOfSync", health="Progressing", revision=REV, operation="Running"),
        ok(sync="Synced", health="Progressing", revision=REV, operation="Succeeded"),
        ok(sync="Synced", health="Healthy", revision=REV),
    ]
    result, seq, _ = wait(answers, **fast)
    assert result.verdict == "healthy"
    assert seq.calls == 4 and result.polls == 4


def test_an_older_revision_is_not_our_success(fast: dict[str, Any]) -> None:
    # Synced and Healthy, but at the commit before ours: Argo CD has not seen the push yet.
    answers = [ok(revision=OLD), ok(revision=OLD), ok(revision=REV)]
    result, seq, _ = wait(answers, **fast)
    assert result.verdict == "healthy" and seq.calls == 3


def test_degraded_at_our_revision_fails(fast: dict[str, Any]) -> None:
    answers = [
        ok(sync="Synced", health="Progressing", revision=REV),
        ok(
            sync="Synced",
            health="Degraded",
            revision=REV,
            message="Deployment exceeded its progress deadline",
        ),
    ]
    result, _, _ = wait(answers, **fast)
    assert result.verdict == "degraded" and not result.ok
    assert "progress deadline" in result.state.describe()


def test_degraded_before_our_revision_is_ignored(fast: dict[str, Any]) -> None:
    answers = [ok(health="Degraded", revision=OLD), ok(revision=REV)]
    result, _, _ = wait(answers, **fast)
    assert result.verdict == "healthy"


def test_failed_sync_operation_fails(fast: dict[str, Any]) -> None:
    answers = [
        ok(
            sync="OutOfSync",
            health="Healthy",
            revision=REV,
            operation="Failed",
            message="PostSync hook failed",
        )
    ]
    result, _, _ = wait(answers, **fast)
    assert result.verdict == "failed"


def test_never_healthy_times_out() -> None:
    clock = [0.0]
    answers = [ok(sync="Synced", health="Progressing", revision=REV)]
    seq = Sequence(answers)
    with serve(seq) as server:
        result = argocd_wait.wait_for_application(
            api_for(server.url),
            "argocd",
            APP,
            revision=REV,
            timeout=60.0,
            interval=10.0,
            clock=lambda: clock[0],
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
        )
    assert result.verdict == "timeout"
    assert seq.calls == 7  # at t = 0, 10, ..., 60 (the deadline); the next would be past it
    assert result.state.health == "Progressing"


def test_not_found_and_server_errors_are_waited_out(fast: dict[str, Any]) -> None:
    answers = [
        Response(404, kube_status(404, "NotFound", f'applications.argoproj.io "{APP}" not found')),
        Response(503, kube_status(503, "ServiceUnavailable", "etcd is busy")),
        ok(revision=REV),
    ]
    result, seq, _ = wait(answers, **fast)
    assert result.verdict == "healthy" and seq.calls == 3


def test_forbidden_fails_at_once_naming_the_permission(fast: dict[str, Any]) -> None:
    answers = [Response(403, kube_status(403, "Forbidden", "applications.argoproj.io is forbidden"))]
    with pytest.raises(argocd_wait.KubernetesAccessError, match=r"needs get on applications\.argoproj\.io"):
        wait(answers, **fast)


def test_cli_wait_with_a_kubeconfig(tmp_path: Path) -> None:
    seq = Sequence([ok(sync="OutOfSync", revision=REV, operation=None), ok(revision=REV)])
    with serve(seq) as server:
        cfg = tmp_path / "kubeconfig"
        cfg.write_text(kubeconfig(server.url))
        args = [
            "rollout",
            "wait",
            "--application",
            APP,
            "--revision",
            REV,
            "--interval",
            "0.01",
            "--timeout",
            "30s",
        ]
        result = CliRunner().invoke(cli, [*args, "--kubeconfig", str(cfg)])
        auth = server.requests[0].headers.get("authorization")
    assert result.exit_code == 0, result.output
    assert "Synced and Healthy" in result.output
    assert auth == "Bearer test-token"


def test_cli_wait_exits_1_when_degraded(tmp_path: Path) -> None:
    seq = Sequence([ok(health="Degraded", revision=REV, message="CrashLoopBackOff")])
    with serve(seq) as server:
        cfg = tmp_path / "kubeconfig"
        cfg.write_text(kubeconfig(server.url))
        args = ["rollout", "wait", "--application", APP, "--revision", REV, "--interval", "0.01"]
        result = CliRunner().invoke(cli, [*args, "--kubeconfig", str(cfg)])
    assert result.exit_code == 1
    assert "is Degraded" in result.output and "CrashLoopBackOff" in result.output


def test_cli_rejects_a_bad_duration() -> None:
    result = CliRunner().invoke(cli, ["rollout", "wait", "--application", APP, "--timeout", "soon"])
    assert result.exit_code == 2 and "expected a duration" in result.output


# --- several sites on one branch (issue 10.4) ------------------------------------------------


def two_rollouts(origin: Origin, tmp_path: Path) -> tuple[str, str, str, Path]:
    """Our rollout commits A to the GitOps branch, a neighbour's rollout then commits B on top.

    Returns (A, B, a commit on another branch that does not contain A, our working copy), the
    working copy being what our commit step left behind: it has A, not B.
    """
    from pipelines.ops import git

    source = tmp_path / "rendered"
    for site in ("uchicago", "geddes"):
        (source / f"gitops/rendered/{site}/cms/minimal").mkdir(parents=True)
        (source / f"gitops/rendered/{site}/cms/minimal/deployment.yaml").write_text(f"site: {site}\n")
    ours = tmp_path / "ours"
    a = git.publish(source, ["gitops/rendered/uchicago/cms/minimal"], origin.url, "gitops", "A\n", ours)
    b = git.publish(
        source, ["gitops/rendered/geddes/cms/minimal"], origin.url, "gitops", "B\n", tmp_path / "theirs"
    )
    assert a.changed and b.changed and origin.rev("refs/heads/gitops") == b.commit
    # A commit that is not on top of ours (another branch of the same repository).
    unrelated = git.publish(
        source, ["gitops/rendered/geddes/cms/minimal"], origin.url, "elsewhere", "C\n", tmp_path / "other"
    )
    return a.commit, b.commit, unrelated.commit, ours


def test_a_later_commit_that_contains_ours_is_our_success(
    origin: Origin, tmp_path: Path, fast: dict[str, Any]
) -> None:
    # All sites follow one branch: after a neighbour's rollout pushed on top of ours, Argo CD
    # reports their commit (status.sync.revision is the branch head it compared against), and
    # waiting for ours exactly would time out and revert a good rollout. A commit counts when
    # `git merge-base --is-ancestor OURS IT` holds (git-merge-base(1)), in a real repository.
    from pipelines.ops import git

    a, b, unrelated, workdir = two_rollouts(origin, tmp_path)
    contains = git.Descendants(workdir, "gitops", a)
    result, _, _ = wait([ok(revision=b)], revision=a, contains=contains, **fast)
    assert result.verdict == "healthy"  # B was fetched into our working copy and contains A
    # A commit that does not contain ours is not our success, with or without the oracle.
    result, seq, _ = wait([ok(revision=unrelated), ok(revision=a)], revision=a, contains=contains, **fast)
    assert result.verdict == "healthy" and seq.calls == 2
    assert not contains(unrelated) and contains(b) and not contains("not-a-sha")
    # Degraded at a later commit that contains ours is our failure (our change is in it).
    result, _, _ = wait([ok(health="Degraded", revision=b)], revision=a, contains=contains, **fast)
    assert result.verdict == "degraded"
    # Negative control: without the oracle, B never counts and the rollout would time out.
    result, _, _ = wait([ok(revision=b)], revision=a, timeout=0.05, interval=0.01)
    assert result.verdict == "timeout"


def test_cli_wait_with_the_gitops_checkout(origin: Origin, tmp_path: Path) -> None:
    a, b, _, workdir = two_rollouts(origin, tmp_path)
    seq = Sequence([ok(revision=b)])
    with serve(seq) as server:
        cfg = tmp_path / "kubeconfig"
        cfg.write_text(kubeconfig(server.url))
        args = ["rollout", "wait", "--application", APP, "--revision", a, "--interval", "0.01",
                "--timeout", "30s", "--kubeconfig", str(cfg), "--checkout", str(workdir), "--branch", "gitops"]  # fmt: skip
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"at {b[:12]}, which contains {a[:12]}" in result.output
    refused = CliRunner().invoke(cli, ["rollout", "wait", "--application", APP, "--checkout", str(workdir)])
    assert refused.exit_code == 2 and "--checkout needs --revision" in refused.output
