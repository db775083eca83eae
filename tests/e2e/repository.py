"""The repository the kind end-to-end test deploys: a copy of this one, configured for the cluster.

Two sites live in the one kind cluster (``argocd.server`` is the cluster itself for both):

- ``kind``: ``cms/minimal`` only, nothing else in its way (no Prometheus), in ``cms-af``;
- ``kind-extra``: a Prometheus (the test runs one) and two variants of ``minimal`` in
  ``cms-extra``: ``minimal-wake`` (autoscaling 0..1, woken by Envoy's request rate) and
  ``minimal-jwt`` (JWT auth against the identity provider the test serves).

Nothing here needs a cluster: the preparation runs everywhere (tests/e2e/test_kind.py), so a
change that breaks the end-to-end input fails in CI, not on the day someone runs kind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

SITE, EXTRA_SITE = "kind", "kind-extra"
NAMESPACE, EXTRA_NAMESPACE = "cms-af", "cms-extra"
PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"
JWT_AUDIENCE = "sonic-e2e"
# Where the identity provider is when no cluster (and so no kind network) exists: TEST-NET-1.
PLACEHOLDER_IDP = "https://192.0.2.1:8443/realms/sonic"

SITES = {
    SITE: f"""\
# A throw-away kind cluster (tests/e2e/test_kind.py).
name: {SITE}
description: A throw-away kind cluster for the end-to-end test
argocd: {{server: https://kubernetes.default.svc}}
kubernetes: {{minVersion: "1.31", maxVersion: "1.31"}}
storage:
  snapshots: {{claim: sonic-model-snapshots}}
experiments:
  cms: {{namespaces: [{NAMESPACE}], gpuQuota: 0}}
""",
    EXTRA_SITE: f"""\
# The same kind cluster as a second site, with a Prometheus (tests/e2e/test_kind.py).
name: {EXTRA_SITE}
description: The kind cluster again, with Prometheus, for autoscaling and JWT
argocd: {{server: https://kubernetes.default.svc}}
kubernetes: {{minVersion: "1.31", maxVersion: "1.31"}}
storage:
  snapshots: {{claim: sonic-model-snapshots}}
prometheus: {{url: "{PROMETHEUS_URL}", namespace: monitoring, operator: false}}
experiments:
  cms: {{namespaces: [{EXTRA_NAMESPACE}], gpuQuota: 0}}
""",
}


def sonic(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as the pipeline steps do)."""
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env)


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
            "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.org",
            "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.org"}  # fmt: skip
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def _variant(minimal: dict[str, Any], name: str, description: str) -> dict[str, Any]:
    data = {k: v for k, v in minimal.items() if k != "replicas"}
    data |= {"name": name, "description": description, "sites": {EXTRA_SITE: {"namespace": EXTRA_NAMESPACE}}}
    data["envoy"] = {**data["envoy"], "admissionGate": {"enabled": False}}
    return data


def prepare_repository(dest: Path, snapshots: Path | None = None, idp: str = PLACEHOLDER_IDP) -> Path:
    """A copy of the repository configured for the two kind sites, built, rendered and committed.

    ``snapshots`` (default ``dest/snapshots``) receives the model snapshots, the directory the kind
    node mounts as every namespace's snapshots claim; ``idp`` is the issuer URL of the identity
    provider ``minimal-jwt`` trusts (its JWKS at ``<idp>/protocol/openid-connect/certs``).
    The result is a git repository whose ``main`` holds everything.
    """
    (dest / "gitops").mkdir(parents=True)
    shutil.copytree(ROOT / "experiments", dest / "experiments")
    shutil.copytree(ROOT / "gitops" / "sites", dest / "gitops" / "sites")
    shutil.copy(ROOT / "gitops" / "repository.yaml", dest / "gitops" / "repository.yaml")
    for site, text in SITES.items():
        (dest / "gitops" / "sites" / f"{site}.yaml").write_text(text)
    exp = dest / "experiments" / "cms" / "experiment.yaml"
    grants = f"sites:\n  {SITE}: {{namespaces: [{NAMESPACE}]}}\n  {EXTRA_SITE}: {{namespaces: [{EXTRA_NAMESPACE}]}}\n"
    exp.write_text(exp.read_text().replace("sites:\n", grants, 1))
    path = dest / "experiments" / "cms" / "minimal.yaml"
    text = path.read_text()
    # Only at kind; no admission gate, because no Prometheus runs for that site.
    text = re.sub(
        r"sites:\n(?:  \S.*\n(?:    .*\n)*)+",
        f"sites:\n  {SITE}:\n    namespace: {NAMESPACE}\n",
        text,
        count=1,
    )
    text = re.sub(r"admissionGate: \{[^}]*\}", "admissionGate: {enabled: false}", text)
    path.write_text(text)
    minimal = yaml.safe_load(text)

    wake = _variant(minimal, "minimal-wake", "minimal, scaled to zero by KEDA and woken by traffic")
    # Scale to zero a minute after the last request; the wake trigger is Envoy's request rate.
    wake["autoscaling"] = {
        "min": 0,
        "max": 1,
        "threshold": 50,
        "cooldownPeriod": "60s",
        "pollingInterval": "5s",
    }
    jwt = _variant(minimal, "minimal-jwt", "minimal behind JWT authentication")
    jwt["envoy"]["auth"] = {
        "jwt": {
            "provider": "e2e-idp",
            "issuer": idp,
            "jwksUri": f"{idp}/protocol/openid-connect/certs",
            "audiences": [JWT_AUDIENCE],
        }
    }
    for data in (wake, jwt):
        (dest / "experiments" / "cms" / f"{data['name']}.yaml").write_text(
            yaml.safe_dump(data, sort_keys=False)
        )

    snapshots = snapshots or dest / "snapshots"
    steps: list[tuple[str, ...]] = [("validate",)]
    steps += [
        ("build-models", f"cms/{n}", "--dest", str(snapshots / "cms" / n))
        for n in ("minimal", "minimal-wake", "minimal-jwt")
    ]
    steps += [("render",), ("pipelines", "render")]
    for args in steps:
        result = sonic(*args, cwd=dest)
        assert result.returncode == 0, f"sonic {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    git(dest.parent, "init", "--quiet", "--initial-branch=main", str(dest))
    (dest / ".gitignore").write_text("snapshots/\n")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "-m", "the end-to-end repository")
    return dest


def rendered(repo: Path, site: str, name: str) -> Path:
    return repo / "gitops" / "rendered" / site / "cms" / name


def repository_secret(url: str, namespace: str = "argocd") -> dict[str, Any]:
    """Argo CD's registration of the configuration repository: a labelled Secret, **no** ``project``.

    The ApplicationSets template ``project`` (``{{.project}}``, the experiment), and Argo CD
    requires "non-scoped" repositories for ApplicationSets with a templated ``project`` field
    (argo-cd docs/operator-manual/applicationset/Generators-Git.md): a repository Secret with
    ``project`` set would not be used by the ApplicationSet controller. A public repository
    needs no credentials; a private one adds ``username``/``password`` here, by the admin.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "sonic-gitops-repository",
            "namespace": namespace,
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "stringData": {"type": "git", "url": url},
    }


def trust_test_ca(directory: Path, ca_pem: str) -> None:
    """Make the rendered ``minimal-jwt`` trust the test's CA (its identity provider has no public certificate).

    A test-only change of the rendered files, before they are published to the GitOps branch:
    a ConfigMap with the CA, mounted over the Envoy image's CA bundle (the JWKS cluster
    verifies against it) and given to the PostSync check as ``SSL_CERT_FILE`` (its token request).
    """
    name = directory.name
    configmaps = directory / "configmap.yaml"
    ca = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "e2e-test-ca", "namespace": EXTRA_NAMESPACE,
                     "annotations": {"argocd.argoproj.io/sync-wave": "0"}},
        "data": {"ca.pem": ca_pem},
    }  # fmt: skip
    configmaps.write_text(configmaps.read_text() + "---\n" + yaml.safe_dump(ca, sort_keys=False))
    volume = {"name": "e2e-test-ca", "configMap": {"name": "e2e-test-ca"}}

    deployments = list(yaml.safe_load_all((directory / "deployment.yaml").read_text()))
    for d in deployments:
        if d and d["metadata"]["name"] == f"{name}-envoy":
            pod = d["spec"]["template"]["spec"]
            pod.setdefault("volumes", []).append(volume)
            for c in pod["containers"]:
                c.setdefault("volumeMounts", []).append(
                    {
                        "name": "e2e-test-ca",
                        "mountPath": "/etc/ssl/certs/ca-certificates.crt",
                        "subPath": "ca.pem",
                        "readOnly": True,
                    }
                )
    (directory / "deployment.yaml").write_text(yaml.safe_dump_all(deployments, sort_keys=False))

    job = yaml.safe_load((directory / "job.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    pod["volumes"].append(volume)
    (container,) = pod["containers"]
    container["volumeMounts"].append({"name": "e2e-test-ca", "mountPath": "/etc/sonic-e2e", "readOnly": True})
    container["env"].append({"name": "SSL_CERT_FILE", "value": "/etc/sonic-e2e/ca.pem"})
    (directory / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))


def point_at(text: str, upstream: dict[str, str]) -> str:
    """``text`` with each upstream URL replaced by the test's server (longest first)."""
    for old in sorted(upstream, key=len, reverse=True):
        text = text.replace(old, upstream[old])
    return text
