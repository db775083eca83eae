"""Reading the site's share of gitops/ and deriving what it needs from the cluster (a frozen tree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.doctor.manifests import (
    WORKFLOWS,
    KindRef,
    SecretRef,
    ShareError,
    claim_refs,
    load_share,
    namespace_objects,
    needed_kinds,
    secret_refs,
    storage_classes,
    target_namespaces,
    workflow_files,
)
from tests.conftest import FIXTURE

POD_SPEC = {
    "volumes": [
        {
            "name": "token",
            "secret": {"secretName": "prometheus-token", "items": [{"key": "token", "path": "token"}]},
        },
        {"name": "models", "persistentVolumeClaim": {"claimName": "snapshots", "readOnly": True}},
        {"name": "cvmfs", "persistentVolumeClaim": {"claimName": "svc-cvmfs"}},
        {
            "name": "projected",
            "projected": {"sources": [{"secret": {"name": "ca-bundle", "optional": True}}]},
        },
    ],
    "containers": [
        {
            "name": "triton",
            "env": [
                {
                    "name": "JWT",
                    "valueFrom": {"secretKeyRef": {"name": "check-token", "key": "jwt", "optional": True}},
                }
            ],
            "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
        }
    ],
}

FILES: dict[str, object] = {
    "gitops/rendered/testsite/cms/svc/application.json": {"name": "testsite-cms-svc", "namespace": "cms"},
    "gitops/rendered/testsite/cms/svc/kustomization.yaml": {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [
            "deployment.yaml",
            "persistentvolumeclaim.yaml",
            "triggerauthentication.yaml",
            "ingress.yaml",
        ],
    },
    "gitops/rendered/testsite/cms/svc/deployment.yaml": [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "svc-triton"},
            "spec": {"template": {"spec": POD_SPEC}},
        },
    ],
    "gitops/rendered/testsite/cms/svc/persistentvolumeclaim.yaml": [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "svc-cvmfs"},
            "spec": {"storageClassName": "cvmfs"},
        },
    ],
    "gitops/rendered/testsite/cms/svc/triggerauthentication.yaml": [
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": {"name": "svc-prometheus"},
            "spec": {
                "secretTargetRef": [{"parameter": "bearerToken", "name": "prometheus-token", "key": "token"}]
            },
        }
    ],
    "gitops/rendered/testsite/cms/svc/ingress.yaml": [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "svc"},
            "spec": {"tls": [{"hosts": ["a"], "secretName": "svc-tls"}]},
        },
    ],
    # Not listed in kustomization.yaml: Argo CD never applies it, neither does the doctor.
    "gitops/rendered/testsite/cms/svc/leftover.yaml": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    ],
    "gitops/argocd/testsite/kustomization.yaml": {"resources": ["applicationset.yaml"]},
    "gitops/argocd/testsite/applicationset.yaml": [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "sonic-testsite", "namespace": "argocd"},
        },
    ],
    "gitops/workflows/common.yaml": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sonic-pipelines"}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "exec", "namespace": "sonic-pipelines"},
        },
    ],
    "gitops/workflows/build-model-repository-testsite.yaml": [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": {"name": "build", "namespace": "cms"},
            "spec": {
                "volumes": [
                    {"name": "s", "persistentVolumeClaim": {"claimName": "snapshots"}},
                    {
                        "name": "t",
                        "secret": {"secretName": "github-token", "items": [{"key": "token", "path": "t"}]},
                    },
                ]
            },
        }
    ],
    "gitops/workflows/build-model-repository-othersite.yaml": [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": {"name": "build", "namespace": "other"},
        },
    ],
    "gitops/workflows/events.yaml": [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Sensor",
            "metadata": {"name": "pr", "namespace": "sonic-pipelines"},
            "spec": {
                "triggers": [
                    {
                        "template": {
                            "k8s": {
                                "source": {
                                    "resource": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow"}
                                }
                            }
                        }
                    }
                ]
            },
        }
    ],
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel, content in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".json"):
            path.write_text(json.dumps(content))
        elif isinstance(content, list):
            path.write_text(yaml.safe_dump_all(content))
        else:
            path.write_text(yaml.safe_dump(content))
    return tmp_path


def test_the_share_is_what_argo_cd_and_the_admin_apply(tree: Path) -> None:
    share = load_share(tree, "testsite")
    assert [m.describe() for m in share.rendered] == [
        "gitops/rendered/testsite/cms/svc/deployment.yaml Deployment/svc-triton",
        "gitops/rendered/testsite/cms/svc/persistentvolumeclaim.yaml PersistentVolumeClaim/svc-cvmfs",
        "gitops/rendered/testsite/cms/svc/triggerauthentication.yaml TriggerAuthentication/svc-prometheus",
        "gitops/rendered/testsite/cms/svc/ingress.yaml Ingress/svc",
    ]
    assert {m.namespace for m in share.rendered} == {"cms"}  # the Application's destination
    assert [m.name for m in share.argocd] == ["sonic-testsite"]
    # The site's share of the workflows: not another site's, not the webhook cluster's.
    assert sorted({m.path for m in share.workflows}) == [
        "gitops/workflows/build-model-repository-testsite.yaml",
        "gitops/workflows/common.yaml",
    ]
    webhooks = load_share(tree, "testsite", receives_webhooks=True)
    assert "gitops/workflows/events.yaml" in {m.path for m in webhooks.workflows}


def test_a_site_with_nothing_rendered_has_an_empty_share(tmp_path: Path) -> None:
    share = load_share(tmp_path, "nosuch")
    assert share.manifests == ()


def test_broken_files_are_reported_with_their_path(tree: Path) -> None:
    (tree / "gitops/rendered/testsite/cms/svc/ingress.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ShareError, match=r"gitops/rendered/testsite/cms/svc/ingress.yaml"):
        load_share(tree, "testsite")
    (tree / "gitops/rendered/testsite/cms/svc/ingress.yaml").unlink()
    with pytest.raises(ShareError, match=r"ingress.yaml"):
        load_share(tree, "testsite")


def test_needed_kinds_include_what_controllers_create(tree: Path) -> None:
    kinds = set(needed_kinds(load_share(tree, "testsite").manifests))
    assert KindRef("argoproj.io", "v1alpha1", "Application") in kinds  # from the ApplicationSet
    assert KindRef("argoproj.io", "v1alpha1", "Workflow") in kinds  # from the WorkflowTemplate
    assert KindRef("keda.sh", "v1alpha1", "TriggerAuthentication") in kinds
    assert KindRef("", "v1", "Namespace") in kinds
    assert not any(k.kind == "Sensor" for k in kinds)
    webhooks = set(needed_kinds(load_share(tree, "testsite", receives_webhooks=True).manifests))
    assert KindRef("argoproj.io", "v1alpha1", "Sensor") in webhooks


def test_a_sensor_needs_the_kinds_its_triggers_create() -> None:
    from pipelines.doctor.manifests import Manifest

    sensor = Manifest("events.yaml", FILES["gitops/workflows/events.yaml"][0])  # type: ignore[index]
    assert KindRef("argoproj.io", "v1alpha1", "Workflow") in needed_kinds([sensor])


def test_secret_references_in_every_shape(tree: Path) -> None:
    promised = [
        SecretRef("cms", "prometheus-token", ("token",), ("prometheus.auth.secretRef",)),
        SecretRef("atlas", "prometheus-token", ("token",), ("prometheus.auth.secretRef",)),
    ]
    refs = {(r.namespace, r.name): r for r in secret_refs(load_share(tree, "testsite").manifests, promised)}
    assert sorted(refs) == [
        ("atlas", "prometheus-token"),
        ("cms", "ca-bundle"),
        ("cms", "check-token"),
        ("cms", "github-token"),
        ("cms", "prometheus-token"),
        ("cms", "s3-credentials"),
        ("cms", "svc-tls"),
    ]
    token = refs[("cms", "prometheus-token")]
    assert token.keys == ("token",) and not token.optional
    assert token.used_by == (
        "gitops/rendered/testsite/cms/svc/deployment.yaml",
        "gitops/rendered/testsite/cms/svc/triggerauthentication.yaml",
        "prometheus.auth.secretRef",
    )
    assert refs[("cms", "check-token")].optional and refs[("cms", "check-token")].keys == ("jwt",)
    assert refs[("cms", "ca-bundle")].optional
    assert refs[("cms", "svc-tls")].tls and refs[("cms", "svc-tls")].keys == ("tls.crt", "tls.key")
    assert refs[("cms", "s3-credentials")].keys == ()


def test_an_optional_reference_is_required_once_anyone_requires_it() -> None:
    a = SecretRef("ns", "s", ("k",), ("a.yaml",), optional=True)
    b = SecretRef("ns", "s", ("j",), ("b.yaml",), optional=False)
    [merged] = secret_refs([], [a, b])
    assert not merged.optional and merged.keys == ("j", "k") and merged.used_by == ("a.yaml", "b.yaml")


def test_claims_the_tree_does_not_create(tree: Path) -> None:
    share = load_share(tree, "testsite")
    refs = claim_refs(share.manifests)
    assert [(r.namespace, r.name) for r in refs] == [("cms", "snapshots")]  # svc-cvmfs is rendered
    assert refs[0].used_by == (
        "gitops/rendered/testsite/cms/svc/deployment.yaml",
        "gitops/workflows/build-model-repository-testsite.yaml",
    )
    assert storage_classes(share.manifests) == {
        "cvmfs": ("gitops/rendered/testsite/cms/svc/persistentvolumeclaim.yaml",)
    }


def test_namespaces_of_the_share(tree: Path) -> None:
    share = load_share(tree, "testsite")
    assert sorted(target_namespaces(share.manifests)) == ["argocd", "cms", "sonic-pipelines"]
    assert namespace_objects(share.manifests) == {"sonic-pipelines": "gitops/workflows/common.yaml"}


def test_workflow_files_match_what_the_pipelines_renderer_writes() -> None:
    """The doctor's list of a site's workflow files, against the renderer's own names (docs/workflows.md)."""
    from pipelines.config import load_tree
    from pipelines.workflows.files import OUT_DIR, render

    tree = load_tree(FIXTURE)
    written = set(render(tree))
    shared = set(workflow_files("", receives_webhooks=True)) - set(
        workflow_files("", receives_webhooks=False)
    )
    per_site = {name: set(workflow_files(name, receives_webhooks=False)) for name in tree.sites}
    covered = shared | set().union(*per_site.values())
    assert written <= covered, f"files no site receives: {written - covered}"
    assert OUT_DIR.as_posix() == WORKFLOWS
