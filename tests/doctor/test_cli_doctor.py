"""`sonic site doctor` without a cluster: usage and environment errors exit 2 with a sentence."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from pipelines.local.processes import free_port
from tests.config.support import SONIC
from tests.conftest import FIXTURE


def doctor(
    *args: str, env: dict[str, str] | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBE") and k != "SONIC_DEBUG"}
    if home is not None:
        base["HOME"] = str(home)  # no ~/.kube/config of whoever runs the tests
    return subprocess.run(
        [*SONIC, "site", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
        cwd=FIXTURE,
    )


def kubeconfig(path: Path, server: str, context: str = "site") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
                "current-context": context,
            }
        )
    )
    return path


def assert_environment_error(proc: subprocess.CompletedProcess[str], says: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_unknown_site_names_the_known_ones(tmp_path: Path) -> None:
    proc = doctor("atlantis", "--format", "json", home=tmp_path)
    assert_environment_error(
        proc, "unknown site 'atlantis' (no gitops/sites/atlantis.yaml); known: anvil, geddes"
    )


def test_no_kubeconfig(tmp_path: Path) -> None:
    proc = doctor("geddes", env={"KUBECONFIG": str(tmp_path / "none")}, home=tmp_path)
    assert_environment_error(proc, "no usable Kubernetes configuration")
    assert "--kubeconfig FILE" in proc.stderr


def test_kubeconfig_file_missing(tmp_path: Path) -> None:
    proc = doctor("geddes", "--kubeconfig", str(tmp_path / "missing.yaml"), home=tmp_path)
    assert_environment_error(proc, "missing.yaml: no such file")


def test_unknown_context(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1")
    proc = doctor("geddes", "--kubeconfig", str(config), "--context", "elsewhere", home=tmp_path)
    assert_environment_error(proc, "no usable Kubernetes configuration")
    assert "elsewhere" in proc.stderr


def test_cluster_unreachable(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    config = kubeconfig(tmp_path / "kc", server)
    proc = doctor("geddes", "--kubeconfig", str(config), home=tmp_path)
    assert_environment_error(proc, f"cannot use the API server at {server}")


def test_help_documents_the_prometheus_override() -> None:
    proc = subprocess.run(
        [*SONIC, "site", "doctor", "--help"], capture_output=True, text=True, timeout=60, cwd=FIXTURE
    )
    assert proc.returncode == 0
    for option in (
        "--kubeconfig",
        "--context",
        "--format",
        "--prometheus-url",
        "--prometheus-ca",
        "--receives-webhooks",
    ):
        assert option in proc.stdout
