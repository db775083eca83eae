"""The safe YAML loader: plain data only, every value located, and nothing but ConfigErrors for bad input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config.errors import ConfigErrors, Location, format_path
from pipelines.config.loader import MAX_BYTES, MAX_NODES, YAML12_FLOAT, load_file, load_text

# A few hundred examples per run keep CI fast; SONIC_FUZZ_EXAMPLES=20000 for a deeper local run.
FUZZ = settings(
    max_examples=int(os.environ.get("SONIC_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def errors_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as exc:
        load_text(text, "f.yaml")
    return [(e.path, e.message) for e in exc.value.errors]


# --- what is accepted, and where it was ------------------------------------------------------------


def test_values_and_keys_are_located() -> None:
    doc = load_text(
        "name: minimal\n"
        "triton:\n"
        "  resources: {cpu: '1', memory: 2Gi}\n"
        "models:\n"
        "  - name: btag\n"
        "    dims: [15, 4]\n",
        "f.yaml",
    )
    assert doc.data["triton"]["resources"] == {"cpu": "1", "memory": "2Gi"}
    assert doc.values[("name",)] == Location("f.yaml", 1, 7)
    assert doc.keys[("name",)] == Location("f.yaml", 1, 1)
    assert doc.values[("triton", "resources", "memory")] == Location("f.yaml", 3, 33)
    assert doc.values[("models", 0, "dims", 1)] == Location("f.yaml", 6, 16)
    assert doc.keys[("models", 0, "dims")] == Location("f.yaml", 6, 5)
    # A path that is not written falls back to the nearest written parent.
    assert doc.locate(("triton", "resources", "cpuLimit")) == Location("f.yaml", 3, 14)
    assert doc.error(("models", 0, "name"), "x").location == Location("f.yaml", 5, 11)


def test_yaml_12_numbers_and_text_that_stays_text() -> None:
    doc = load_text("a: 1e-4\nb: 1.0e+3\nc: 2024-01-01\nd: '1.30'\ne: 0x1f\nf: ~\ng: yes\n", "f.yaml")
    assert doc.data == {"a": 1e-4, "b": 1000.0, "c": "2024-01-01", "d": "1.30", "e": 31, "f": None, "g": True}
    assert doc.raw[("e",)] == "0x1f"  # source text of non-strings, for "write it in quotes" hints
    assert ("d",) not in doc.raw


def test_byte_order_mark_and_windows_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes("\ufeffname: x\r\nexperiment: cms\r\n".encode())
    assert load_file(path).data == {"name": "x", "experiment": "cms"}


def test_small_aliases_are_fine() -> None:
    doc = load_text("a: &r {cpu: '1'}\nb: *r\nc: [*r, *r]\n", "f.yaml")
    assert doc.data["c"] == [{"cpu": "1"}, {"cpu": "1"}]
    assert doc.values[("c", 1, "cpu")] == Location("f.yaml", 1, 13)  # where the anchored value is


# --- what is refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("a: 1\na: 2\n", "a", "duplicate key 'a' (first defined at line 1)"),
        ("a: {b: 1, b: 2}\n", "a.b", "duplicate key 'b'"),
        ("<<: {a: 1}\n", "(top level)", "merge keys"),
        (
            "a: !!python/object/apply:os.system [id]\n",
            "a",
            "'!!python/object/apply:os.system' is not allowed",
        ),
        ("a: !!binary aGk=\n", "a", "'!!binary' is not allowed"),
        ("a: !Ref x\n", "a", "'!Ref' is not allowed"),
        ("a: !!str {b: 1}\n", "a", "'!!str' is not allowed"),
        ("a: !!bool maybe\n", "a", "'maybe' is not a valid bool"),
        ("a: !!int 12abc\n", "a", "'12abc' is not a valid int"),
        ("a: 0x_\n", "a", "'0x_' is not a valid int"),
        ("a: " + "9" * 5000 + "\n", "a", "is not a valid int"),
        ("a: .nan\n", "a", "not a finite number"),
        ("a: -.inf\n", "a", "not a finite number"),
        ("a: &x [*x]\n", "a[0]", "recursive YAML alias"),
        ("? [1]\n: x\n", "(top level)", "mapping keys must be plain strings"),
        ("!!python/name:os.system a: 1\n", "(top level)", "is not allowed on a key"),
        ("- a\n", "(top level)", "found a list"),
        ("42\n", "(top level)", "found a single value (42)"),
        ("~\n", "(top level)", "found a single value (None)"),
        ("# nothing\n", "(top level)", "the file is empty"),
        ("a: 1\n---\nb: 2\n", "(top level)", "more than one YAML document"),
        ("a:\n\tb: 1\n", "(top level)", "a tab"),
        ("a: [1\n", "(top level)", "invalid YAML"),
        ("a: b: c\n", "(top level)", "invalid YAML"),
        ("a: *missing\n", "(top level)", "undefined alias"),
        ("a: \x00\n", "(top level)", "U+0000"),
        ("a: " + "[" * 70 + "]" * 70 + "\n", "(top level)", "nested deeper than 64 levels"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "(top level)", "invalid YAML"),
        ("a: \ud800\n", "(top level)", "not valid Unicode"),
    ],
)
def test_refused(text: str, path: str, fragment: str) -> None:
    found = errors_of(text)
    assert any(p == path and fragment in m for p, m in found), found


def test_alias_bomb_is_stopped_early() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    ((path, message),) = errors_of("\n".join(lines) + "\n")
    assert path == "(top level)" and f"more than {MAX_NODES} values after expanding aliases" in message


def test_several_problems_in_one_file_are_reported_together() -> None:
    found = errors_of("a: 1\na: 2\nb: !!binary aGk=\nc: {d: 1, d: 2}\n")
    assert [p for p, _ in found] == ["a", "b", "c.d"]


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * MAX_BYTES)
    with pytest.raises(ConfigErrors) as exc:
        load_file(path, "big.yaml")
    (err,) = exc.value.errors
    assert "larger than 4 MiB" in err.message and err.location == Location("big.yaml", 1, 1)


def test_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(ConfigErrors) as exc:
        load_file(path, "latin1.yaml")
    (err,) = exc.value.errors
    assert err.location == Location("latin1.yaml", 2, 17) and "byte 0xe9" in err.message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as exc:
        load_file(tmp_path / "missing.yaml", "missing.yaml")
    assert "cannot read file" in exc.value.errors[0].message


# --- fuzzing: nothing but ConfigErrors, always located ---------------------------------------------

# Fragments that exercise YAML's corners: indicators, tags, anchors, documents, odd numbers.
_PIECES = [
    *"ab:-?[]{},&*!|>'\"#%@`.~=\\ \n\t0123456789_xeE+",
    "!!",
    "<<",
    "---",
    "...",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!binary ",
    "!!map ",
    "!!seq ",
    "!!python/object:os.system ",
    "!x ",
    "&a ",
    "*a",
    "0b",
    "0x",
    "0o",
    ".inf",
    ".nan",
    "1e99999",
    "\ud800",
    "\x00",
    "\x07",
    "\u2028",
    "\ufeff",
    "\x85",
    "é",
]


def _assert_only_located_config_errors(call: Any) -> None:
    try:
        call()
    except ConfigErrors as exc:
        assert exc.errors, "ConfigErrors must carry at least one error"
        for err in exc.errors:
            assert err.location.line >= 1 and err.location.col >= 1, err
            assert err.message


@FUZZ
@given(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join))
def test_fuzz_yaml_like_text_raises_only_config_errors(text: str) -> None:
    _assert_only_located_config_errors(lambda: load_text(text, "fuzz.yaml"))


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_any_text_raises_only_config_errors(text: str) -> None:
    _assert_only_located_config_errors(lambda: load_text(text, "fuzz.yaml"))


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_raise_only_config_errors(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.yaml"
    path.write_bytes(data)
    _assert_only_located_config_errors(lambda: load_file(path, "f.yaml"))


# PyYAML's emitter folds NEL and the Unicode line separators into spaces: not round-trippable.
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")) | st.just("\n"), max_size=20)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_keys = _text.filter(bool)
_data = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=25,
)


class _Dumper(yaml.SafeDumper):
    """Quotes strings such as "1e5" that the loader (YAML 1.2 floats) would read as numbers."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789"))


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


@FUZZ
@given(st.dictionaries(_keys, _data, min_size=1, max_size=5), st.booleans())
def test_fuzz_valid_documents_round_trip_with_every_value_located(data: dict[str, Any], flow: bool) -> None:
    text = yaml.dump(data, Dumper=_Dumper, default_flow_style=flow, allow_unicode=True, sort_keys=False)
    doc = load_text(text, "gen.yaml")
    assert doc.data == data
    n_lines = text.count("\n") + 1
    for path in _paths(data):
        loc = doc.values[path]
        assert 1 <= loc.line <= n_lines, (format_path(path), loc)
        if path:
            parent_is_map = isinstance(doc.data if len(path) == 1 else _get(data, path[:-1]), dict)
            assert (path in doc.keys) == parent_is_map


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        data = data[p]
    return data
