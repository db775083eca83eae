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
        ("Bearer 8fJ2kLq9ZpX4vN7bR1tY6wM3sC0dHgEa", "a random-looking (high-entropy base64) string"),
        ("xoxb-1234567890-abcdefghij", "a Slack token"),
        ("ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5", "a GitHub token"),
        (
            "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsT",
            "a random-looking",
        ),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "a random-looking"),
        ("https://ghp_x@github.com/cms/models.git", "a credential in a URL (user information before '@')"),
        (
            "https://h.example.org/m.onnx?access_token=abc",
            "a credential in a URL (query parameter 'access_token')",
        ),
        ("https://a.blob.core.windows.net/m/x.onnx?sv=2022-11-02&sig=abc", "(query parameter 'sig')"),
        ("https://s3.example.org/m/x.onnx?X-Amz-Signature=abc", "(query parameter 'X-Amz-Signature')"),
    ],
)
def test_inline_credentials_are_recognised(value: str, what: str) -> None:
    ((path, found),) = find_inline_secrets({"description": value})
    assert path == ("description",)
    assert what in found


@pytest.mark.parametrize(
    "value",
    [
        "/cvmfs/cms.cern.ch/el9_amd64_gcc12/cms/cmssw/CMSSW_14_1_0_pre7/external/el9_amd64_gcc12/data/RecoBTag/Combined/data/models",
        "nvcr.io/nvidia/tritonserver:24.08-py3@sha256:" + "0123456789abcdef" * 4,
        "https://keycloak.example.org/realms/cms/protocol/openid-connect/certs?kid=abc",
        "123e4567-e89b-12d3-a456-426614174000",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        "${SONIC_TOKEN}",
    ],
)
def test_ordinary_values_are_not_secrets(value: str) -> None:
    assert list(find_inline_secrets({"description": value})) == []


def test_a_digest_field_is_not_a_hex_secret() -> None:
    assert (
        list(
            find_inline_secrets(
                {"artifact": {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("key", "flagged"),
    [
        ("pwd", True),
        ("auth", True),
        ("example.org/api-token", True),
        ("client_key", True),
        ("nginx.ingress.kubernetes.io/auth-url", False),
        ("nginx.ingress.kubernetes.io/session-cookie-name", False),
        ("nginx.ingress.kubernetes.io/auth-type", False),
    ],
)
def test_secret_like_keys_in_free_form_maps(key: str, flagged: bool) -> None:
    found = list(find_inline_secrets({"ingress": {"annotations": {key: "basic"}}}))
    assert bool(found) is flagged, found


# --- platform boundaries (issue 11, findings 2 and 11) ----------------------------------------------


def _allow_annotations(tree: Path, patterns: str) -> None:
    site = tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(
        site.read_text().replace(
            "  publishesStatus: true\n", f"  publishesStatus: true\n  allowedAnnotations: {patterns}\n"
        )
    )


def test_annotations_matching_the_site_patterns_are_allowed(example_tree: Path) -> None:
    _allow_annotations(example_tree, '["nginx.ingress.kubernetes.io/proxy-*-timeout"]')
    valid_with(
        example_tree,
        CPU
        + "envoy:\n  ingress:\n    host: cms-zz.af.uchicago.edu\n    annotations:\n"
        + '      nginx.ingress.kubernetes.io/proxy-read-timeout: "600"\n'
        + '      nginx.ingress.kubernetes.io/proxy-send-timeout: "600"\n',
    )


def test_an_allowed_pattern_does_not_let_a_deployment_replace_the_sites_annotation(
    example_tree: Path,
) -> None:
    _allow_annotations(example_tree, '["nginx.ingress.kubernetes.io/*"]')
    (example_tree / "experiments" / "cms" / "zz-case.yaml").write_text(
        CPU + "envoy:\n  ingress:\n    host: cms-zz.af.uchicago.edu\n    annotations:\n"
        "      nginx.ingress.kubernetes.io/backend-protocol: HTTP\n"
        "      nginx.ingress.kubernetes.io/proxy-body-size: 8m\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_tree(example_tree)
    (err,) = info.value.errors
    assert err.path == "envoy.ingress.annotations.nginx.ingress.kubernetes.io/backend-protocol"
    assert "is set by site 'uchicago' on every Ingress" in err.message


def test_images_the_site_lists_in_any_spelling_are_allowed(example_tree: Path) -> None:
    valid_with(
        example_tree,
        CPU
        + "triton:\n  image: nvcr.io/nvidia/tritonserver@sha256:"
        + "0" * 64
        + "\nenvoy:\n  image: docker.io/envoyproxy/envoy:v1.31.2\n",
    )
    valid_with(example_tree, CPU + "envoy:\n  image: index.docker.io/envoyproxy/envoy:distroless-v1.40.0\n")


def test_a_site_may_allow_a_whole_organisation(example_tree: Path) -> None:
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(
        site.read_text().replace(
            "\nargocd:", "\nimages: {triton: [nvcr.io/nvidia/tritonserver, ghcr.io/cms-sw/*]}\nargocd:", 1
        )
    )
    valid_with(example_tree, CPU + "triton:\n  image: ghcr.io/cms-sw/sonic/triton:24.08\n")


def test_colliding_application_names_are_reported_in_every_file(example_tree: Path) -> None:
    """Issue 11, finding 11: cms/mini-mal and cms-mini/mal both make the Application uchicago-cms-mini-mal."""
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(
        site.read_text().replace(
            "  cms: {namespaces: [cms-af]", "  cms-mini: {namespaces: [mini]}\n  cms: {namespaces: [cms-af]"
        )
    )
    mini = example_tree / "experiments" / "cms-mini"
    mini.mkdir()
    (mini / "experiment.yaml").write_text(
        'name: cms-mini\nowners: ["@someone"]\ncontact: a@b.org\nsites:\n  uchicago: {namespaces: [mini]}\n'
    )
    (mini / "mal.yaml").write_text(
        CPU.replace("zz-case", "mal")
        .replace("experiment: cms", "experiment: cms-mini")
        .replace("namespace: cms-af", "namespace: mini")
        .replace("nfs: [cms/models]", "cvmfs: [/cvmfs/cms.cern.ch/models]")
    )
    (example_tree / "experiments" / "cms" / "mini-mal.yaml").write_text(CPU.replace("zz-case", "mini-mal"))
    with pytest.raises(ConfigErrors) as info:
        load_tree(example_tree)
    found = {(e.location.file.split("repo/")[-1], e.path, e.message) for e in info.value.errors}
    assert {(f, p) for f, p, _ in found} == {
        ("experiments/cms/mini-mal.yaml", "name"),
        ("experiments/cms-mini/mal.yaml", "name"),
    }
    for _, _, message in found:
        assert message.startswith(
            "the Argo CD Application of this deployment at 'uchicago' would be named 'uchicago-cms-mini-mal'"
        )
    (mine,) = [m for f, _, m in found if f == "experiments/cms/mini-mal.yaml"]
    assert "like that of cms-mini/mal at 'uchicago'" in mine and mine.endswith(
        "rename one of the deployments"
    )


DIGEST = "@sha256:" + "0123456789abcdef" * 4


# A site that requires digests, and allows the example repositories these tests use besides NVIDIA's.
REQUIRE_DIGESTS = (
    "\nrequireImageDigests: true\nimages: {triton: [nvcr.io/nvidia/tritonserver, ghcr.io/example/*]}"
)


def test_images_pinned_by_digest_pass_at_a_site_that_requires_digests(example_tree: Path) -> None:
    """Written or default images pinned by digest pass, and a digest is no inline secret."""
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(site.read_text().replace("\nexperiments:", REQUIRE_DIGESTS + "\nexperiments:"))
    pins = (
        f"  image: nvcr.io/nvidia/tritonserver:24.08-py3{DIGEST}\n",
        f"  image: envoyproxy/envoy:distroless-v1.40.0{DIGEST}\n",
    )
    for name in ("cms/minimal.yaml", "atlas/exatrkx.yaml"):
        path = example_tree / "experiments" / name
        text = path.read_text()
        text = text.replace("\ntriton:\n", "\ntriton:\n" + pins[0], 1)
        text = (
            text.replace("\nenvoy:\n", "\nenvoy:\n" + pins[1], 1)
            if "\nenvoy:\n" in text
            else text + "envoy:\n" + pins[1]
        )
        path.write_text(text)
    valid_with(
        example_tree,
        CPU + f"triton:\n  image: ghcr.io/example/triton-custom{DIGEST}\nenvoy:\n{pins[1]}",
    )


def test_the_digest_rule_names_each_tag_only_image(example_tree: Path) -> None:
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(site.read_text().replace("\nexperiments:", REQUIRE_DIGESTS + "\nexperiments:"))
    (example_tree / "experiments" / "cms" / "zz-case.yaml").write_text(
        CPU + "triton:\n  image: ghcr.io/example/triton:1.0\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_tree(example_tree)
    ours = {
        (e.path, e.message.split(" is pinned")[0])
        for e in caught.value.errors
        if "zz-case" in e.location.file
    }
    assert ours == {
        ("triton.image", "image 'ghcr.io/example/triton:1.0'"),
        ("envoy.image", "the default image 'envoyproxy/envoy:distroless-v1.40.0'"),
    }
