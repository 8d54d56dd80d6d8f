from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smhsearch import Budget
from smhsearch._budget import format_count


@pytest.mark.parametrize(
    "text,base,expected",
    [("5.3M", 10**7, 5_300_000), ("46K", 10**6, 46_000), ("46k", 10**6, 46_000), ("25%", 464_154, 116_038),
     ("0.5%", 1000, 5), (1234, 10**6, 1234), (0.1, 1000, 100), (" 7.9 M ", 10**8, 7_900_000)],
)
def test_forms(text, base, expected):
    assert Budget.parse(text).resolve(base) == expected


@given(st.integers(1, 10**10))
def test_int_round_trip(n):
    assert Budget.parse(str(n)).resolve(1) == n == Budget.parse(n).resolve(1)


@given(st.floats(0.001, 0.999), st.integers(1, 10**9))
def test_fraction_never_exceeds(frac, base):
    assert Budget.parse(frac).resolve(base) <= frac * base


@pytest.mark.parametrize("bad", ["", "M", "5.3X", "-1", "0", "100%", "0%", True, None, -3, 1.0, float("nan"), [5]])
def test_bad_budgets(bad):
    with pytest.raises(ValueError, match="budget"):
        Budget.parse(bad)


def test_format_count():
    assert [format_count(n) for n in (999, 46_000, 464_154, 5_288_548)] == ["999", "46K", "464.2K", "5.29M"]
