"""The PromQL scope check on its own: what a deployment's query may and may not read."""

from __future__ import annotations

import pytest

from pipelines.config.promql import promql_problems

NS = "cms-af"


@pytest.mark.parametrize(
    "query",
    [
        'sum(nv_inference_pending_request_count{namespace="cms-af"})',
        'sum(rate(envoy_http_downstream_rq_total{namespace="cms-af", envoy_cluster_name="triton"}[1h]))',
        'max_over_time(sum(nv_inference_pending_request_count{namespace="cms-af"})[30m:1m])',
        'sum(a{namespace="cms-af"}) / on() group_left sum(b{namespace="cms-af", job!="x"} offset 5m)',
        'a{namespace="cms-af", namespace!="other"}',
        'a{namespace="cms-af" or namespace="cms-af", job="x"}',
        "vector(1)",
    ],
)
def test_queries_scoped_to_the_namespace_pass(query: str) -> None:
    assert promql_problems(query, NS) == []


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("sum(up)", 'selector up must carry the matcher namespace="cms-af"'),
        ('{__name__=~".+"}', 'selector {…} must carry the matcher namespace="cms-af"'),
        ('a{namespace="cms-afx"}', 'selector a must carry the matcher namespace="cms-af"'),
        ('a{namespace!="kube-system"}', 'selector a must carry the matcher namespace="cms-af"'),
        ('a{namespace="cms-af" or job="x"}', 'selector a must carry the matcher namespace="cms-af"'),
        ('a{namespace="cms-af", namespace=~".*"}', "a regular expression on namespace is not allowed"),
        ('a{namespace!~"x"}', "a regular expression on namespace is not allowed"),
        ('rate(a{namespace="cms-af"}[61m])', "the range [1h1m] is longer than 60m"),
        ('max_over_time(a{namespace="cms-af"}[2h:5m])', "the range [2h] is longer than 60m"),
        ('a{namespace="cms-af"} offset 2h', "offset 2h is longer than 60m"),
        ('a{namespace="cms-af"} @ start()', "the @ modifier"),
        ("sum(a{namespace=", "not valid PromQL"),
    ],
)
def test_queries_that_reach_further_are_refused(query: str, fragment: str) -> None:
    problems = promql_problems(query, NS)
    assert any(fragment in p for p in problems), problems
