"""The corpus of invalid files: each one, dropped into a copy of the example tree, makes
``sonic validate`` fail with the exact field path and message its header promises.

A corpus file starts with header comments::

    # case: what is wrong, in words
    # kind: deployment | site | experiment
    # place: where the file goes in the tree (replacing the example file there, if any)
    # path: the exact JSON path of the expected error
    # message: a fragment of the expected message
    # error-in: the file the error is reported in, when not the placed one (optional)
    # files: a folder under invalid/files/ copied next to the placed file first (optional)
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.config.loader import MAX_BYTES
from pipelines.config.tree import classify

CORPUS = Path(__file__).parent / "invalid"
LINE = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<path>.+?): (?P<message>.*)$")


@dataclass(frozen=True)
class Case:
    source: Path
    what: str
    kind: str
    place: str
    path: str
    message: str
    error_in: str
    files: str | None = None

    @classmethod
    def read(cls, source: Path) -> Case:
        head: dict[str, str] = {}
        for raw in source.read_bytes().splitlines():
            line = raw.decode("latin-1")
            if not line.startswith("# ") or ": " not in line:
                break
            key, value = line[2:].split(": ", 1)
            head[key] = value
        return cls(
            source,
            head["case"],
            head["kind"],
            head["place"],
            head["path"],
            head["message"],
            head.get("error-in", head["place"]),
            head.get("files"),
        )


CASES = [Case.read(p) for p in sorted(CORPUS.glob("*.yaml"))]


@dataclass(frozen=True)
class Reported:
    file: str
    line: int
    col: int
    path: str
    message: str


def run_validate(tree: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, list[Reported]]:
    """``sonic validate`` in ``tree``: exit code, all output, and the parsed error lines."""
    monkeypatch.chdir(tree)
    result = CliRunner().invoke(cli, ["validate", *args], catch_exceptions=False)
    reported = []
    for line in result.stdout.splitlines():
        m = LINE.match(line)
        if m:
            reported.append(Reported(m["file"], int(m["line"]), int(m["col"]), m["path"], m["message"]))
    return result.exit_code, result.output, reported


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(CASES) >= 40
    assert {c.kind for c in CASES} == {"deployment", "site", "experiment"}
    groups = {c.source.name.split("-")[0] for c in CASES}
    assert groups == {"schema", "loader", "rule"}


@pytest.mark.parametrize("case", CASES, ids=[c.source.stem for c in CASES])
def test_invalid_file_is_reported_exactly(
    case: Case, example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = example_tree / case.place
    target.parent.mkdir(parents=True, exist_ok=True)
    if case.files is not None:
        shutil.copytree(CORPUS / "files" / case.files, target.parent, dirs_exist_ok=True)
    target.write_bytes(case.source.read_bytes())
    assert classify(example_tree, target) == case.kind, "the header's kind must match where the file goes"

    code, output, reported = run_validate(example_tree, monkeypatch)

    assert code == 1, output
    assert "Traceback" not in output
    matching = [r for r in reported if r.file == case.error_in and r.path == case.path]
    assert matching, f"no error at {case.error_in}: {case.path}; got:\n{output}"
    hits = [r for r in matching if case.message in r.message]
    assert hits, f"no message containing {case.message!r} at {case.path}; got:\n{output}"
    assert all(r.line > 0 and r.col > 0 for r in hits)


def test_file_over_the_size_limit(example_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = example_tree / "experiments" / "cms" / "huge.yaml"
    filler = "# padding\n" * (MAX_BYTES // 10 + 1)
    big.write_text("name: huge\nexperiment: cms\n" + filler)
    assert big.stat().st_size > MAX_BYTES

    code, output, reported = run_validate(example_tree, monkeypatch)

    assert code == 1
    assert "Traceback" not in output
    (err,) = [r for r in reported if r.file == "experiments/cms/huge.yaml"]
    assert err.path == "(top level)" and "larger than 4 MiB" in err.message and err.line == 1


def test_every_error_in_a_file_is_reported_at_once(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example_tree / "experiments" / "cms" / "many.yaml").write_text(
        "name: many\n"
        "sites:\n"
        "  uchicago: {namespace: cms-af, replica: 2}\n"
        "triton:\n"
        "  resources: {cpu: 2, memory: 4 GiB}\n"
        "  server: {exitTimeout: soon}\n"
        "envoy:\n"
        "  lbPolicy: fastest\n"
        "  foo: 1\n"
        "  bar: 2\n"
        "models:\n"
        "  - name: m1\n"
        "    platform: onnx\n"
    )
    (example_tree / "gitops" / "sites" / "uchicago.yaml").write_text(
        (example_tree / "gitops" / "sites" / "uchicago.yaml")
        .read_text()
        .replace('minVersion: "1.29"', "minVersion: 1.29")
    )

    code, output, reported = run_validate(example_tree, monkeypatch)

    assert code == 1
    in_file = {(r.path, r.line) for r in reported if r.file == "experiments/cms/many.yaml"}
    assert in_file == {
        ("experiment", 1),  # missing: reported where the mapping starts
        ("sites.uchicago.replica", 3),
        ("triton.resources.cpu", 5),
        ("triton.resources.memory", 5),
        ("triton.server.exitTimeout", 6),
        ("envoy.lbPolicy", 8),
        ("envoy.foo", 9),
        ("envoy.bar", 10),
        ("models[0].platform", 13),
    }
    assert ("gitops/sites/uchicago.yaml", "kubernetes.minVersion") in {(r.file, r.path) for r in reported}
    assert f"{len(reported)} errors" in output


def test_semantic_errors_across_files_are_reported_together(
    example_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exps = example_tree / "experiments"
    text = (exps / "cms" / "particlenet.yaml").read_text()
    (exps / "cms" / "particlenet.yaml").write_text(text.replace("class: A10}", "class: A11}"))
    text = (exps / "icecube" / "cnn-classifier.yaml").read_text()
    (exps / "icecube" / "cnn-classifier.yaml").write_text(
        text.replace("name: icecube_cnn, version", "name: cnn, version")
    )

    code, _, reported = run_validate(example_tree, monkeypatch)

    assert code == 1
    assert {(r.file, r.path) for r in reported} == {
        ("experiments/cms/particlenet.yaml", "sites.nautilus.triton.gpu.class"),
        ("experiments/icecube/cnn-classifier.yaml", "triton.probes.readinessModel.name"),
    }
