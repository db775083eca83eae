"""A report as a table for people or as JSON for machines (Argo, CI, dashboards)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipelines.checks.result import Report

_STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow"}
_LABEL = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


def to_json(report: Report) -> str:
    """Stable JSON: keys in a fixed order, two-space indent, trailing newline."""
    return json.dumps(report.as_dict(), indent=2) + "\n"


def table(report: Report) -> Table:
    t = Table(
        title=f"checks of {report.deployment} at site {report.site} via {report.endpoint}",
        title_justify="left",
        show_lines=False,
    )
    t.add_column("", no_wrap=True)
    t.add_column("check", no_wrap=True)
    t.add_column("target", no_wrap=True)
    t.add_column("result")
    t.add_column("time", justify="right", no_wrap=True)
    for r in report.results:
        t.add_row(
            Text(_LABEL[r.status], style=_STYLE[r.status]),
            r.check,
            r.target or "-",
            Text(r.detail),
            f"{r.seconds:.2f}s" if r.status != "skip" else "",
        )
    return t


def print_report(report: Report, console: Console) -> None:
    """The table, then one summary line that says plainly whether the deployment passed."""
    console.print(table(report))
    c = report.counts()
    verdict = Text("PASSED", style="bold green") if report.passed else Text("FAILED", style="bold red")
    line = Text.assemble(verdict, f": {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped")
    console.print(line)
