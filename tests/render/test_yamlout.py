"""The YAML writer and the change summary: deterministic, readable, lossless."""

from __future__ import annotations

import yaml

from pipelines.render.diff_summary import summarize
from pipelines.render.yamlout import dump, dump_all
from tests.render.support import placement, rendered


def test_key_order_is_canonical_and_independent_of_insertion() -> None:
    a = {
        "spec": {"b": 1, "a": 2},
        "kind": "X",
        "metadata": {"labels": {"z": "1"}, "name": "n"},
        "apiVersion": "v1",
    }
    b = {
        "apiVersion": "v1",
        "metadata": {"name": "n", "labels": {"z": "1"}},
        "kind": "X",
        "spec": {"a": 2, "b": 1},
    }
    assert dump(a) == dump(b)
    assert dump(a).splitlines()[:4] == ["apiVersion: v1", "kind: X", "metadata:", "  name: n"]


def test_round_trip_multiline_and_no_anchors() -> None:
    shared = {"k": "v"}
    doc = {
        "data": {"script": "line one\nline two\n", "a": shared, "b": shared},
        "n": 1.5,
        "t": True,
        "s": "on",
    }
    text = dump(doc)
    assert "&" not in text and "*id" not in text
    assert "script: |" in text
    assert yaml.safe_load(text) == doc
    assert text.endswith("\n")


def test_rendered_objects_round_trip() -> None:
    p, _ = placement("geddes", "particlenet")
    objs = rendered(p)
    text = dump_all(objs, header="header line")
    assert text.startswith("# header line\n")
    assert list(yaml.safe_load_all(text)) == objs


def test_summary_names_the_changes_that_matter() -> None:
    before = {
        "gitops/rendered/s/e/d/deployment.yaml": dump(
            {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2}}
        )
    }
    after = {
        "gitops/rendered/s/e/d/deployment.yaml": dump(
            {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 5}}
        ),
        "gitops/rendered/s/e/new/service.yaml": dump({"kind": "Service", "metadata": {"name": "svc"}}),
    }
    lines = list(summarize(before, after).lines())
    assert lines == [
        "site s",
        "  e/d (changed)",
        "    ~ Deployment d: replicas 2 -> 5",
        "  e/new (new)",
        "    + Service svc",
    ]
    assert summarize(after, after).empty
