"""Kubernetes quantities: our parser against the ``kubernetes`` client's, on the schema's forms."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as upstream

from pipelines.config.quantity import memory_text, parse_quantity

SUFFIXES = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


@given(
    whole=st.integers(min_value=0, max_value=10**9),
    fraction=st.one_of(st.none(), st.integers(min_value=0, max_value=999)),
    suffix=st.sampled_from(SUFFIXES),
)
def test_same_value_as_the_kubernetes_client(whole: int, fraction: int | None, suffix: str) -> None:
    text = f"{whole}" + (f".{fraction}" if fraction is not None else "") + suffix
    assert parse_quantity(text) == upstream(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", Decimal("0.5")), ("2", Decimal(2)), ("4Gi", Decimal(4 * 1024**3)), ("1k", Decimal(1000))],
)
def test_examples(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1e3", "-1", "1.5.2", "4GB", "m", "0x10"])
def test_other_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_memory_is_shown_in_the_largest_exact_unit() -> None:
    assert memory_text(Decimal(4 * 1024**3)) == "4Gi"
    assert memory_text(Decimal(1536 * 1024**2)) == "1536Mi"
    assert memory_text(Decimal(1000)) == "1000"
