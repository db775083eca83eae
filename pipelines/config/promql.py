"""Checks on the PromQL a deployment writes itself (``autoscaling.query``, ``activationQuery``).

An experiment's pull request is untrusted, and its PromQL runs with the site Prometheus' reach
(KEDA's trigger, the admission gate). So the query is parsed with a real PromQL parser
(``promql-parser``, the Rust parser of GreptimeDB with Python bindings) and every vector
selector must name the deployment's own namespace with an exact ``namespace="<ns>"`` matcher;
ranges and subqueries are bounded so that one query cannot make Prometheus read days of data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import promql_parser

__all__ = ["MAX_RANGE_SECONDS", "promql_problems"]

MAX_RANGE_SECONDS = 3600  # the longest range, subquery window or offset a query may use


def _seconds(d: timedelta | None) -> float:
    return 0.0 if d is None else d.total_seconds()


def _show(d: timedelta | None) -> str:
    return "0s" if d is None else str(promql_parser.display_duration(d))


def _selector_problems(node: promql_parser.VectorSelector, namespace: str) -> Iterator[str]:
    name = node.name or "{…}"
    groups = node.matchers.or_matchers or [node.matchers.matchers]
    for group in groups:
        ns = [m for m in group if m.name == "namespace"]
        for m in ns:
            if m.op in (promql_parser.MatchOp.Re, promql_parser.MatchOp.NotRe):
                yield f'selector {name}: a regular expression on namespace is not allowed; write namespace="{namespace}"'
                return
        if not any(m.op == promql_parser.MatchOp.Equal and m.value == namespace for m in ns):
            yield (
                f'selector {name} must carry the matcher namespace="{namespace}" (the deployment\'s own '
                "namespace at this site): a query may only read its own experiment's series"
            )
            return
    if _seconds(node.offset) > MAX_RANGE_SECONDS:
        yield f"selector {name}: offset {_show(node.offset)} is longer than {MAX_RANGE_SECONDS // 60}m"
    if node.at is not None:
        yield f"selector {name}: the @ modifier (reading a fixed past time) is not allowed"


def promql_problems(query: str, namespace: str) -> list[str]:
    """What is wrong with ``query`` for a deployment in ``namespace``; empty when it may run.

    Example:
        >>> promql_problems('sum(rate(foo{namespace="cms"}[5m]))', "cms")
        []
        >>> promql_problems("sum(foo)", "cms")[0][:34]
        'selector foo must carry the matche'
    """
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        return [f"not valid PromQL: {exc}"]
    problems: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            problems.extend(_selector_problems(node, namespace))
        elif isinstance(node, promql_parser.MatrixSelector | promql_parser.SubqueryExpr):
            if _seconds(node.range) > MAX_RANGE_SECONDS:
                problems.append(
                    f"the range [{_show(node.range)}] is longer than {MAX_RANGE_SECONDS // 60}m: "
                    "a scaling query needs recent samples only"
                )
            if isinstance(node, promql_parser.SubqueryExpr) and _seconds(node.offset) > MAX_RANGE_SECONDS:
                problems.append(f"subquery offset is longer than {MAX_RANGE_SECONDS // 60}m")

    promql_parser.walk(expr, visit)
    return problems
