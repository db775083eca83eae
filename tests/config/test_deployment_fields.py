"""The rules of the deployment fields of issue 12 item 2: near misses that are fine, and the
cases that need a changed site or a second deployment (the corpus covers single-file cases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ConfigErrors, load_tree, names
from pipelines.config.semantic import RESERVED_KEY_PREFIXES
from tests.config.test_rules import CPU, valid_with


def errors_with(tree: Path, text: str, name: str = "zz-case") -> list[str]:
    (tree / "experiments" / "cms" / f"{name}.yaml").write_text(text.replace("name: zz-case", f"name: {name}"))
    try:
        load_tree(tree)
    except ConfigErrors as exc:
        return [f"{e.path}: {e.message}" for e in exc.errors]
    return []


def test_ordinary_tolerations_annotations_and_affinity_are_fine(example_tree: Path) -> None:
    valid_with(
        example_tree,
        CPU
        + "triton:\n"
        + "  tolerations: [{key: nvidia.com/gpu, operator: Exists}, {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}]\n"
        + "  podAnnotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: 'false'}\n"
        + "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
        + "        nodeSelectorTerms: [{matchExpressions: [{key: gpu-mem, operator: Gt, values: ['40']}]}]\n"
        + "envoy:\n  service: {type: NodePort, alias: supersonic}\n",
    )


def test_gpu_count_zero_with_cpu_instances_is_fine_and_claims_no_quota(example_tree: Path) -> None:
    """cms's GPU quota at Nautilus is 6 and particlenet takes 5: 20 replicas without GPUs still fit."""
    valid_with(
        example_tree,
        CPU.replace("uchicago: {namespace: cms-af}", "nautilus: {namespace: cms}").replace(
            "nfs: [cms/models]", "cvmfs: [/cvmfs/cms.cern.ch/models]"
        )
        + "replicas: 20\ntriton:\n  gpu: {class: A10, count: 0}\n",
    )


def test_ingress_annotations_matching_the_site_allowlist_are_fine(example_tree: Path) -> None:
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(
        site.read_text().replace(
            "  annotations:\n",
            "  allowedAnnotations: ['nginx.ingress.kubernetes.io/proxy-*']\n  annotations:\n",
            1,
        )
    )
    valid_with(
        example_tree,
        CPU
        + "envoy:\n  ingress:\n    host: cms-zz.af.uchicago.edu\n    tls: default\n"
        + "    annotations: {nginx.ingress.kubernetes.io/proxy-read-timeout: '300'}\n",
    )


def test_gate_with_its_own_query_is_fine(example_tree: Path) -> None:
    valid_with(
        example_tree,
        CPU
        + "envoy:\n  admissionGate:\n    metric: query\n"
        + '    query: sum(rate(nv_inference_queue_duration_us{namespace="cms-af"}[1m]))\n',
    )


def test_extra_mounts_need_the_sites_cvmfs_and_the_site_admins_are_named(example_tree: Path) -> None:
    site = example_tree / "gitops" / "sites" / "uchicago.yaml"
    site.write_text(site.read_text().replace("  cvmfs: {hostPath: /cvmfs}\n", ""))
    found = errors_with(
        example_tree,
        CPU + "triton:\n  extraMounts: [{cvmfs: /cvmfs/cms.cern.ch/data, mountPath: /opt/data}]\n",
    )
    assert any(
        e.startswith("triton.extraMounts: site 'uchicago' offers no CVMFS") and "ask the site admins" in e
        for e in found
    ), found


def test_an_alias_taken_by_another_deployment_of_the_namespace_is_reported(example_tree: Path) -> None:
    (example_tree / "experiments" / "cms" / "zz-other.yaml").write_text(
        CPU.replace("name: zz-case", "name: zz-other") + "envoy:\n  service: {alias: supersonic}\n"
    )
    found = errors_with(example_tree, CPU + "envoy:\n  service: {alias: zz-other-envoy}\n")
    assert any(
        e.startswith(
            "envoy.service.alias: Service name 'zz-other-envoy' is already the Envoy Service of cms/zz-other"
        )
        for e in found
    ), found
    found = errors_with(example_tree, CPU + "envoy:\n  service: {alias: supersonic}\n")
    assert any(
        "is already the alias Service of cms/zz-case" in e
        or "is already the alias Service of cms/zz-other" in e
        for e in found
    ), found


def test_an_alias_at_another_site_or_namespace_is_fine(example_tree: Path) -> None:
    (example_tree / "experiments" / "cms" / "zz-other.yaml").write_text(
        CPU.replace("name: zz-case", "name: zz-other")
        .replace("uchicago: {namespace: cms-af}", "nautilus: {namespace: cms}")
        .replace("nfs: [cms/models]", "cvmfs: [/cvmfs/cms.cern.ch/models]")
        + "envoy:\n  service: {alias: supersonic}\n"
    )
    valid_with(example_tree, CPU + "envoy:\n  service: {alias: supersonic}\n")


@pytest.mark.parametrize(
    "key", ["sonic.fastml.org/x", "app.kubernetes.io/component", "argocd.argoproj.io/hook"]
)
def test_reserved_keys_are_refused_everywhere(example_tree: Path, key: str) -> None:
    text = CPU + f"envoy:\n  podAnnotations: {{{key}: x}}\ntriton:\n  podAnnotations: {{{key}: x}}\n"
    found = errors_with(example_tree, text)
    assert {e.split(":", 1)[0] for e in found} >= {
        f"envoy.podAnnotations.{key}",
        f"triton.podAnnotations.{key}",
    }


def test_every_label_and_annotation_the_renderer_sets_is_reserved() -> None:
    """The rule's prefixes cover the keys names.py decides and Argo CD's sync waves, so a
    deployment can never override them on its Services, pods or Ingress."""
    from tests.render.support import placements, rendered

    p, _ = placements()[0]
    keys = set(names.labels(p, "envoy")) | {
        names.ROLE_LABEL,
        names.CONFIG_CHECKSUM_ANNOTATION,
        names.INGRESS_STATUS_ANNOTATION,
    }
    keys |= {k for o in rendered(p) for k in o["metadata"].get("annotations", {}) if k.startswith("argocd.")}
    assert "argocd.argoproj.io/sync-wave" in keys
    assert all(k.startswith(RESERVED_KEY_PREFIXES) for k in keys), sorted(keys)
