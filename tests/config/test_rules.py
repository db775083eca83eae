"""What the cross-file rules must accept: near misses of the invalid corpus that are fine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ConfigErrors, load_tree
from pipelines.config.secrets import find_inline_secrets

CPU = """\
name: zz-case
experiment: cms
sites:
  uchicago: {namespace: cms-af}
modelRepository:
  nfs: [cms/models]
models:
  - name: m1
    maxBatchSize: 8
    inputs: [{name: x, dtype: FP32, dims: [-1, 4]}]
    outputs: [{name: y, dtype: FP32, dims: [2]}]
"""


def valid_with(tree: Path, text: str) -> None:
    (tree / "experiments" / "cms" / "zz-case.yaml").write_text(text)
    try:
        load_tree(tree)
    except ConfigErrors as exc:  # pragma: no cover - the message is the point when it fails
        pytest.fail(str(exc))


def test_scale_to_zero_waking_on_an_envoy_metric(example_tree: Path) -> None:
    valid_with(
        example_tree,
        CPU
        + "autoscaling:\n  min: 0\n  max: 3\n  metric: query\n"
        + '  query: sum(rate(nv_inference_queue_duration_us{namespace="cms-af"}[1m]))\n'
        + '  activationQuery: sum(rate(envoy_cluster_upstream_rq_total{namespace="cms-af"}[1m]))\n',
    )


def test_site_fixes_replicas_where_the_deployment_autoscales(example_tree: Path) -> None:
    valid_with(
        example_tree,
        CPU.replace("uchicago: {namespace: cms-af}", "uchicago: {namespace: cms-af, replicas: 2}")
        + "autoscaling: {max: 3}\n",
    )


def test_check_shapes_fill_dynamic_dims_and_remote_artifacts_are_not_looked_up(example_tree: Path) -> None:
    valid_with(
        example_tree,
        CPU.replace(
            "    maxBatchSize: 8\n",
            "    artifact:\n      source: https://models.example.org/m1/model.onnx\n"
            "      sha256: 357317f8dfc5ddc196b0de82a4ddad9deffb930fe0940f3204124844b6bc35d8\n"
            "      size: 1000\n"
            "    maxBatchSize: 8\n",
        )
        + "checks:\n  models:\n    - {name: m1, batchSize: 8, shapes: {x: [100, 4]}}\n",
    )


def test_gpu_quota_exactly_used_up_is_fine(example_tree: Path) -> None:
    """particlenet takes 11 of Geddes's 12 GPUs at most; one more single-GPU replica fits exactly."""
    valid_with(
        example_tree,
        CPU.replace("uchicago: {namespace: cms-af}", "geddes: {namespace: cms-sonic}").replace(
            "nfs: [cms/models]", "cvmfs: [/cvmfs/cms.cern.ch/models]"
        )
        + "triton:\n  gpu: {class: A100}\n",
    )


def test_secret_references_in_annotations_are_not_secrets() -> None:
    data = {
        "ingress": {
            "annotations": {
                "nginx.ingress.kubernetes.io/auth-tls-secret": "monitoring/client-ca",
                "nginx.ingress.kubernetes.io/auth-secret": "basic-auth",
                "cert-manager.io/cluster-issuer": "letsencrypt",
            }
        },
        "description": "tokens are fetched from Keycloak; see https://keycloak.example.org/realms/cms",
    }
    assert list(find_inline_secrets(data)) == []


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("https://svc:hunter2@prometheus.example.org", "a password in a URL"),
        ("Bearer abcdefghijklmnopqrstuvwxyz012345", "a bearer token"),
        ("xoxb-1234567890-abcdefghij", "a Slack token"),
        ("github_pat_" + "A" * 40, "a GitHub token"),
    ],
)
def test_inline_credentials_are_recognised(value: str, what: str) -> None:
    assert list(find_inline_secrets({"description": value})) == [(("description",), what)]
