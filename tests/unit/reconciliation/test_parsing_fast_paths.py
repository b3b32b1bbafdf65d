"""The parser's fast paths read exactly what the straightforward ways read: a plain line split
on the separator is what the csv module makes of it, and integer arithmetic on an amount's
digits is what Decimal makes of it (or both refuse it)."""

from __future__ import annotations

import csv
import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kora.reconciliation.dialects import load_dialect
from kora.reconciliation.domain.parsing import _amount, _Refused, _split

MOMO = load_dialect("momo")
_ALPHABET = st.sampled_from(list(';,|"\r\n ab0.-+\t\x00é'))


@given(text=st.text(alphabet=_ALPHABET, min_size=1, max_size=30))
def test_split_is_what_csv_reads(text: str) -> None:
    try:
        expected: list[str] | str = (list(csv.reader([text], delimiter=";", strict=True)) or [[]])[0]
    except csv.Error:
        expected = "csv.Error"
    try:
        got: list[str] | str = _split(MOMO, text)
    except csv.Error:
        got = "csv.Error"
    assert got == expected


def _reference(text: str, exponent: int, decimals: int) -> int | str:
    """The amount as Decimal reads it (the parser's previous way), or why it is refused."""
    match = re.match(r"^[+-]?[0-9]+(?:\.([0-9]+))?$", text)
    if match is None:
        return "not a decimal number"
    if len(match.group(1) or "") > decimals:
        return "more than"
    minor = Decimal(text).scaleb(exponent)
    if minor != minor.to_integral_value():
        return "finer than"
    return int(minor)


@given(
    sign=st.sampled_from(["", "-", "+"]),
    whole=st.text(alphabet="0123456789", min_size=0, max_size=12),
    fraction=st.none() | st.text(alphabet="0123456789", min_size=0, max_size=5),
    exponent=st.integers(min_value=0, max_value=3),
    noise=st.sampled_from(["", " ", "x", "1_0", ".", "e3"]),
)
def test_major_amounts_are_read_as_decimal_reads_them(
    sign: str, whole: str, fraction: str | None, exponent: int, noise: str
) -> None:
    text = sign + whole + ("" if fraction is None else "." + fraction) + noise
    expected = _reference(text, exponent, MOMO.decimals)
    try:
        got: int | str = _amount(MOMO, text, exponent, "amount")
    except _Refused as refused:
        got = next(why for why in ("not a decimal number", "more than", "finer than") if why in refused.detail)
    assert got == expected
