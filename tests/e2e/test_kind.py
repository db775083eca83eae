"""End to end on a real Kubernetes cluster (kind): GitOps through Argo CD, autoscaling, JWT, and
one real run of every pipeline.

NOT RUN WHERE THIS WAS WRITTEN: that machine has no Docker engine and no image pulls, so the
cluster test skips there; it was written to be correct by reading. It runs on a workstation with
Docker, kind, kubectl and network access (`make e2e`, or `pytest -m kind tests/e2e`), and in the
GitHub Actions `e2e` job; expect 30-90 minutes, most of it pulling images.

What it does (tests/e2e/repository.py and cluster.py hold the parts):
 1. makes a kind cluster (the test's snapshot directory mounted on the node), builds the
    pipeline image from the Dockerfile and loads it;
 2. starts, on the kind network's gateway, the servers the cluster reaches: the repository over
    git's **smart** HTTP protocol (``git http-backend``; Argo CD's go-git has no dumb-protocol
    client), a GitHub REST API stand-in (commit statuses, the bot's comment) and an identity
    provider (OAuth2 client credentials, JWKS) over TLS;
 3. prepares the repository for the sites ``kind`` (``cms/minimal``) and ``kind-extra``
    (``minimal-wake``, scale to zero; ``minimal-jwt``, JWT auth), builds the snapshots, renders,
    commits it as ``main``;
 4. installs the pinned Argo CD, Argo Workflows, Argo Events (+ an EventBus), KEDA, Prometheus
    Operator CRDs, a Prometheus with the rendered scrape configs and rules, MinIO as the
    workflows' artifact repository; registers the repository with Argo CD **without a
    project scope**; publishes the three deployments to the ``gitops`` branch; applies
    ``gitops/argocd/`` and ``gitops/workflows/`` (URLs pointed at the test's servers);
 5. ``sonic rollout wait`` for each Application (Synced and Healthy, PostSync check included),
    then through port-forwards: ``sonic check`` of minimal; minimal-jwt refuses anonymous
    requests and passes with a token from the client credentials grant; minimal-wake, scaled
    to zero by KEDA, wakes on traffic;
 6. one real run of each pipeline: pr-validation from a signed webhook delivery (EventSource,
    Sensor), build-model-repository, rollout, scheduled-validation;
 7. deletes the cluster and stops every server it started, whatever happened.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from pipelines.checks import Endpoint
from pipelines.config import names
from pipelines.render.argocd import APPLICATION_FILE
from pipelines.workflows.settings import load_settings
from tests.conftest import ROOT
from tests.e2e import cluster
from tests.e2e.cluster import Kubectl, run
from tests.e2e.repository import (
    EXTRA_NAMESPACE,
    EXTRA_SITE,
    JWT_AUDIENCE,
    NAMESPACE,
    SITE,
    git,
    point_at,
    prepare_repository,
    rendered,
    repository_secret,
    sonic,
    trust_test_ca,
)
from tests.ops.fakes import (
    Request,
    Response,
    github_comment,
    github_error,
    github_status,
    serve,
    serve_github,
)
from tests.support.githttp import GitHttpServer
from tests.support.tls import make_tls_files

DEPLOYMENTS = ((SITE, "minimal"), (EXTRA_SITE, "minimal-wake"), (EXTRA_SITE, "minimal-jwt"))
WEBHOOK_SECRET = "e2e-webhook-secret"  # a throw-away cluster's, known to the test
CLIENT_ID, CLIENT_SECRET = "sonic-e2e-checks", "e2e-client-secret"


# --- runs everywhere ----------------------------------------------------------------------------


def test_the_e2e_repository_prepares_without_a_cluster(tmp_path: Path) -> None:
    """The cluster test's input is valid, builds and renders (this part runs everywhere)."""
    repo = prepare_repository(tmp_path / "repo")
    for site, name in DEPLOYMENTS:
        assert (rendered(repo, site, name) / "deployment.yaml").is_file()
        assert (rendered(repo, site, name) / "job.yaml").is_file()
        assert list((repo / "snapshots" / "cms" / name / "snapshots").iterdir())
    assert (rendered(repo, EXTRA_SITE, "minimal-wake") / "scaledobject.yaml").is_file()
    assert "--client-credentials" in (rendered(repo, EXTRA_SITE, "minimal-jwt") / "job.yaml").read_text()
    for site in (SITE, EXTRA_SITE):
        appset = (repo / "gitops" / "argocd" / site / "applicationset.yaml").read_text()
        assert "server: https://kubernetes.default.svc" in appset
    workflows = repo / "gitops" / "workflows"
    assert (workflows / "scheduled-validation-kind.yaml").is_file()
    assert (workflows / "build-model-repository-kind.yaml").is_file()
    assert git(repo, "status", "--porcelain") == ""  # everything committed as main


def test_the_test_ca_patch_keeps_the_rendered_objects_valid(tmp_path: Path) -> None:
    repo = prepare_repository(tmp_path / "repo")
    directory = rendered(repo, EXTRA_SITE, "minimal-jwt")
    trust_test_ca(directory, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    deployments = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((directory / "deployment.yaml").read_text())
    }
    envoy = deployments["minimal-jwt-envoy"]["spec"]["template"]["spec"]
    assert {"name": "e2e-test-ca", "configMap": {"name": "e2e-test-ca"}} in envoy["volumes"]
    job = yaml.safe_load((directory / "job.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "SSL_CERT_FILE", "value": "/etc/sonic-e2e/ca.pem"} in job["env"]


def test_the_repository_is_registered_without_a_project_scope() -> None:
    # Issue 10.14: the ApplicationSets template `project` ({{.project}}: the experiment), and Argo
    # CD wants "non-scoped" repositories for ApplicationSets with a templated project field
    # (argo-cd docs/operator-manual/applicationset/Generators-Git.md); a Secret with `project`
    # would be a project-scoped repository the ApplicationSet controller does not use.
    appset = yaml.safe_load((ROOT / "gitops" / "argocd" / "uchicago" / "applicationset.yaml").read_text())
    assert "{{" in appset["spec"]["template"]["spec"]["project"]
    registration = repository_secret("https://github.com/fastmachinelearning/sonic-gitops.git")
    assert registration["metadata"]["labels"] == {"argocd.argoproj.io/secret-type": "repository"}
    assert "project" not in registration["stringData"]
    assert registration["stringData"] == {
        "type": "git",
        "url": "https://github.com/fastmachinelearning/sonic-gitops.git",
    }


# --- the cluster ---------------------------------------------------------------------------------


@functools.cache
def unavailable() -> str | None:
    """Why a kind cluster cannot be made here, or None."""
    for tool in ("docker", "kind", "kubectl", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return f"no Docker engine: {info.stderr.strip().splitlines()[-1] if info.stderr.strip() else 'docker info failed'}"
    pull = subprocess.run(
        ["docker", "pull", cluster.KIND_NODE_IMAGE], capture_output=True, text=True, timeout=900, check=False
    )
    if pull.returncode != 0:
        return f"cannot pull {cluster.KIND_NODE_IMAGE}: {pull.stderr.strip()[-300:]}"
    return None


@pytest.fixture
def kind_cluster(tmp_path: Path) -> Iterator[tuple[str, Kubectl, Path]]:
    """(cluster name, kubectl, snapshots dir mounted on the node); always deleted."""
    why = unavailable()
    if why:
        reason = f"kind end-to-end test needs Docker with image pulls, kind and kubectl: {why}"
        if os.environ.get("SONIC_E2E_REQUIRED"):  # the CI job that exists to run it
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"sonic-e2e-{uuid.uuid4().hex[:6]}"
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir(parents=True)
    snapshots.chmod(0o777)  # the build workflow writes here as UID 10001
    config = tmp_path / "kind.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n"
        f"  extraMounts:\n  - hostPath: {snapshots}\n    containerPath: /snapshots\n"
    )
    kubeconfig = tmp_path / "kubeconfig"
    try:
        run("kind", "create", "cluster", "--name", name, "--image", cluster.KIND_NODE_IMAGE, "--config", str(config),
            "--kubeconfig", str(kubeconfig), "--wait", "180s", timeout=600)  # fmt: skip
        yield name, Kubectl(kubeconfig), snapshots
    finally:
        subprocess.run(
            ["kind", "delete", "cluster", "--name", name], capture_output=True, timeout=300, check=False
        )


def github_api(req: Request) -> Response:
    """GitHub's REST API as the pipelines use it: commit statuses and the bot's one comment."""
    path = req.path.split("?")[0]
    if req.method == "POST" and "/statuses/" in path:
        return Response(201, github_status(req.json()["state"], req.json().get("context", "default")))
    if req.method == "GET" and path.endswith("/comments"):
        return Response(200, [])
    if req.method == "POST" and path.endswith("/comments"):
        owner_repo = "/".join(path.split("/")[2:4])
        return Response(201, github_comment(7, req.json()["body"], "sonic-bot", owner_repo, 1))
    return Response(404, github_error("Not Found"))


class IdentityProvider:
    """An OAuth2 token endpoint (client credentials, RFC 6749 section 4.4) and the JWKS of its key.

    ``issuer`` is set once its server listens (the URL names the port).
    """

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": "e2e", "alg": "RS256", "use": "sig"}]}
        self.issuer = ""

    def __call__(self, req: Request) -> Response:
        path = req.path.split("?")[0]
        if req.method == "GET" and path.endswith("/protocol/openid-connect/certs"):
            return Response(200, self.jwks)
        if req.method == "POST" and path.endswith("/protocol/openid-connect/token"):
            form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
            scheme, _, value = req.headers.get("authorization", "").partition(" ")
            user, _, password = (
                base64.b64decode(value).decode().partition(":") if scheme == "Basic" else ("", "", "")
            )
            if form.get("grant_type") != "client_credentials" or (unquote_plus(user), unquote_plus(password)) != (
                CLIENT_ID, CLIENT_SECRET
            ):  # fmt: skip
                return Response(401, {"error": "invalid_client"})
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": JWT_AUDIENCE, "sub": CLIENT_ID, "iat": now, "exp": now + 300}
            token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "e2e"})
            return Response(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})
        return Response(404, {"error": "not_found"})


@pytest.mark.kind
def test_deployments_and_pipelines_on_a_real_cluster(
    kind_cluster: tuple[str, Kubectl, Path], tmp_path: Path
) -> None:
    name, kubectl, snapshots = kind_cluster
    image = load_settings(ROOT).image
    run("docker", "build", "-t", image, str(ROOT), timeout=1800)
    run("kind", "load", "docker-image", image, "--name", name, timeout=600)

    gateway = cluster.kind_gateway()
    tls = make_tls_files(tmp_path / "tls", ip_addresses=(gateway,))
    served = tmp_path / "served"
    with ExitStack() as servers:
        github = servers.enter_context(serve_github(github_api, host=gateway))
        idp = IdentityProvider()
        idp.issuer = issuer = f"{servers.enter_context(serve(idp, host=gateway, tls=tls)).url}/realms/sonic"
        git_server = servers.enter_context(GitHttpServer(served, gateway, allow_push=True))

        # 3. The repository, served as fastmachinelearning/sonic-gitops.git (the URL the rendered
        # objects name, pointed at the test's server).
        repo = prepare_repository(tmp_path / "repo", snapshots, idp=issuer)
        settings = load_settings(repo)
        bare = served / f"{settings.repository}.git"
        bare.parent.mkdir(parents=True)
        git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        git(repo, "push", "--quiet", str(bare), "main")
        main_sha = git(repo, "rev-parse", "HEAD")
        repo_url = git_server.url(f"{settings.repository}.git")
        upstream = {
            settings.clone_url: repo_url,
            settings.git_server: git_server.url("").rstrip("/"),
            settings.github_api: github.url,
        }

        # 4. The platform.
        cluster.install_upstream(kubectl)
        kubectl.apply(
            cluster.namespace(NAMESPACE), cluster.namespace(EXTRA_NAMESPACE), cluster.namespace(settings.namespace),
            *cluster.snapshot_volumes([NAMESPACE, EXTRA_NAMESPACE]),
        )  # fmt: skip
        monitoring = [
            doc for n in ("minimal-wake", "minimal-jwt")
            for doc in yaml.safe_load_all((rendered(repo, EXTRA_SITE, n) / "configmap.yaml").read_text())
            if doc and doc["metadata"]["name"].endswith("-monitoring")
        ]  # fmt: skip
        kubectl.apply(*cluster.prometheus(monitoring))
        kubectl.apply(*cluster.minio_artifact_repository([NAMESPACE, settings.namespace]))
        kubectl.rollout_status("monitoring", "deploy/prometheus")
        kubectl.rollout_status("minio", "deploy/minio")
        client = {
            "token-url": f"{issuer}/protocol/openid-connect/token",
            "client-id": CLIENT_ID,
            "client-secret": CLIENT_SECRET,
        }
        kubectl.apply(
            # The PostSync check's own client Secret (pipelines.config.names.check_client_secret).
            cluster.secret("minimal-jwt-check-client", EXTRA_NAMESPACE, client),
            *(cluster.secret(settings.github_token.name, ns, {settings.github_token.key: "e2e"})
              for ns in (settings.namespace, NAMESPACE)),
            cluster.secret(settings.push_token.name, settings.namespace, {settings.push_token.key: "e2e"}),
            cluster.secret(settings.webhook_secret.name, settings.namespace, {settings.webhook_secret.key: WEBHOOK_SECRET}),
            cluster.event_bus(settings.namespace),
            repository_secret(repo_url),
            # Triton's management key (docs/security.md): the site admins' Secret in each namespace.
            *(cluster.secret(names.TRITON_ADMIN_SECRET, ns, {names.TRITON_ADMIN_SECRET_KEY: "e2e-admin-key"})
              for ns in (NAMESPACE, EXTRA_NAMESPACE)),
        )  # fmt: skip

        # Publish the three deployments to the GitOps branch, as a rollout's commit step does;
        # minimal-jwt first learns to trust the test's CA (its identity provider is the test's),
        # in a copy: main keeps what `sonic render` writes.
        publish = tmp_path / "publish"
        shutil.copytree(repo / "gitops" / "rendered", publish / "gitops" / "rendered")
        trust_test_ca(rendered(publish, EXTRA_SITE, "minimal-jwt"), tls.ca_cert.read_text())
        revisions: dict[str, str] = {}
        for site, deployment in DEPLOYMENTS:
            out = tmp_path / f"commit-{deployment}"
            commit = sonic(
                "rollout", "commit", "--source", str(publish), "--path", f"gitops/rendered/{site}/cms/{deployment}",
                "--site", site, "--deployment", f"cms/{deployment}", "--source-revision", main_sha,
                "--remote", repo_url, "--branch", settings.gitops_branch, "--workdir", str(tmp_path / f"wc-{deployment}"),
                "--outputs", str(out), cwd=repo,
            )  # fmt: skip
            assert commit.returncode == 0, commit.stdout + commit.stderr
            revisions[deployment] = (out / "commit").read_text()
        for site in (SITE, EXTRA_SITE):
            for manifest in sorted((repo / "gitops" / "argocd" / site).glob("*.yaml")):
                if manifest.name != "kustomization.yaml":
                    patched = tmp_path / f"argocd-{site}-{manifest.name}"
                    patched.write_text(point_at(manifest.read_text(), upstream))
                    kubectl.apply_file(patched)
        # This cluster's share of gitops/workflows; the test submits one run of the CronWorkflow
        # instead of waiting for its schedule.
        for file in ("common", "events", "pr-validation", "rollout", f"build-model-repository-{SITE}",
                     f"scheduled-validation-{SITE}"):  # fmt: skip
            patched = tmp_path / f"workflows-{file}.yaml"
            patched.write_text(
                point_at((repo / "gitops" / "workflows" / f"{file}.yaml").read_text(), upstream)
            )
            kubectl.apply_file(patched)

        # 5. Argo CD deploys each directory: Synced and Healthy at our commit, PostSync checks passed.
        kubeconfig = str(kubectl.kubeconfig)
        for site, deployment in DEPLOYMENTS:
            application = json.loads((rendered(repo, site, deployment) / APPLICATION_FILE).read_text())[
                "name"
            ]
            wait = sonic(
                "rollout", "wait", "--application", application, "--namespace", "argocd", "--revision",
                revisions[deployment], "--timeout", "45m", "--interval", "15s", "--kubeconfig", kubeconfig,
                "--checkout", str(tmp_path / f"wc-{deployment}"), "--branch", settings.gitops_branch,
                cwd=repo, timeout=2800,
            )  # fmt: skip
            assert wait.returncode == 0, wait.stdout + wait.stderr

        check_minimal(kubectl, repo)
        check_jwt(kubectl, repo, tmp_path, tls.ca_cert, client)
        wake_from_zero(kubectl)

        # 6. One real run of each pipeline.
        run_pr_validation(kubectl, repo, bare, settings, github)
        wf = kubectl.create(cluster.workflow_from_template(
            "build-model-repository", NAMESPACE, {"experiment": "cms", "deployment": "minimal", "revision": main_sha}))  # fmt: skip
        cluster.wait_for_workflow(kubectl, wf, NAMESPACE)
        wf = kubectl.create(cluster.workflow_from_template(
            "rollout", settings.namespace, {"site": SITE, "deployment": "cms/minimal", "revision": main_sha}))  # fmt: skip
        cluster.wait_for_workflow(kubectl, wf, settings.namespace)
        wf = kubectl.create(
            cluster.workflow_from_cron(kubectl, f"scheduled-validation-{SITE}", settings.namespace)
        )
        cluster.wait_for_workflow(kubectl, wf, settings.namespace)


def check(endpoint: str, repo: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = sonic("check", "--endpoint", endpoint, "--format", "json", *args, cwd=repo, env=env)
    report: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
    assert result.returncode == 0 and report.get("passed"), result.stdout + result.stderr
    return report


def check_minimal(kubectl: Kubectl, repo: Path) -> None:
    with kubectl.port_forward(NAMESPACE, "svc/minimal-envoy", 8001) as port:
        check(f"127.0.0.1:{port}", repo, "--site", SITE, "cms/minimal")


def check_jwt(kubectl: Kubectl, repo: Path, tmp_path: Path, ca: Path, client: dict[str, str]) -> None:
    """Anonymous requests refused, a token from the client credentials grant accepted (issue 10.10)."""
    credentials = tmp_path / "check-client"
    credentials.mkdir()
    for k, v in client.items():
        (credentials / k).write_text(v)
    env = {**os.environ, "SSL_CERT_FILE": str(ca)}  # the identity provider's certificate is the test's
    with (
        kubectl.port_forward(EXTRA_NAMESPACE, "svc/minimal-jwt-envoy", 8001) as port,
        kubectl.port_forward("monitoring", "svc/prometheus", 9090) as prometheus,
    ):
        report = check(f"127.0.0.1:{port}", repo, "--site", EXTRA_SITE, "--client-credentials", str(credentials),
                       "--prometheus", f"http://127.0.0.1:{prometheus}", "cms/minimal-jwt", env=env)  # fmt: skip
    status = {(c["check"], c.get("target", "")): c["status"] for c in report["checks"]}
    assert status[("auth.anonymous", "")] == "pass" and status[("auth.token", "")] == "pass"


def wake_from_zero(kubectl: Kubectl) -> None:
    """KEDA scales minimal-wake to zero after its cooldown, and a client's requests wake it."""

    def replicas() -> int:
        return int(
            kubectl.get("deployment", "minimal-wake-triton", EXTRA_NAMESPACE)["spec"].get("replicas", 1)
        )

    kubectl.wait_for("minimal-wake scaled to zero", lambda: replicas() == 0, timeout=900, interval=15)
    with kubectl.port_forward(EXTRA_NAMESPACE, "svc/minimal-wake-envoy", 8001) as port:
        endpoint = Endpoint.parse(f"127.0.0.1:{port}", timeout=5)

        def answered() -> bool:
            client = endpoint.client()
            try:  # every call counts in Envoy's request rate, the wake trigger
                return bool(client.is_server_ready(client_timeout=5))
            except Exception:
                return False
            finally:
                client.close()

        kubectl.wait_for("minimal-wake woken by traffic", answered, timeout=900, interval=2)
    assert replicas() >= 1


def run_pr_validation(kubectl: Kubectl, repo: Path, bare: Path, settings: Any, github: Any) -> None:
    """A pull request, announced by a signed webhook delivery, validated by the pipeline."""
    git(repo, "checkout", "--quiet", "-b", "more-docs")
    minimal = repo / "experiments" / "cms" / "minimal.yaml"
    minimal.write_text(
        minimal.read_text().replace("\ndescription:", "\ndescription: (edited in a pull request)", 1)
    )
    result = sonic("render", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "minimal: a better description")
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "push", "--quiet", str(bare), "HEAD:refs/pull/1/head")  # what GitHub makes for a pull request
    payload = json.dumps({
        "action": "opened",
        "repository": {"full_name": settings.repository},
        "pull_request": {"number": 1, "head": {"sha": head}, "base": {"ref": "main"}},
    }).encode()  # fmt: skip
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    before = {w["metadata"]["name"] for w in workflows(kubectl, settings.namespace)}
    for label in (
        "eventsource-name=sonic-github",
        "sensor-name=sonic-pr-validation",
    ):  # created by Argo Events
        kubectl.wait_for(f"a ready pod {label}", lambda label=label: "True" in kubectl(
            "-n", settings.namespace, "get", "pods", "-l", label, "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}", check=False), timeout=600)  # fmt: skip
    with kubectl.port_forward(settings.namespace, "svc/sonic-github-eventsource-svc", 12000) as port:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/github", content=payload, timeout=30,
            headers={"Content-Type": "application/json", "X-GitHub-Event": "pull_request",
                     "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature},
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    created = kubectl.wait_for(
        "the Sensor's pr-validation Workflow",
        lambda: [w["metadata"]["name"] for w in workflows(kubectl, settings.namespace)
                 if w["metadata"]["name"] not in before and w["spec"].get("workflowTemplateRef", {}).get("name") == "pr-validation"],
        timeout=300,
    )  # fmt: skip
    cluster.wait_for_workflow(kubectl, created[0], settings.namespace)
    states = [r.json()["state"] for r in github.requests if r.method == "POST" and "/statuses/" in r.path]
    assert states[0] == "pending" and states[-1] == "success", states
    assert any(r.method == "POST" and r.path.endswith("/issues/1/comments") for r in github.requests)


def workflows(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(kubectl("-n", namespace, "get", "workflows", "-o", "json"))[
        "items"
    ]
    return items
