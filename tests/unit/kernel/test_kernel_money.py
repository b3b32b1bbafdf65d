"""Money is an integer of minor units in a supported currency; nothing else gets in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kora.kernel import FixedClock, InvalidAmount, Money, UnknownCurrency, currency, new_id
from kora.kernel.money import supported_currencies

CODES = supported_currencies()


@pytest.mark.parametrize("amount", [1.0, 0.5, 100.0, Decimal(100), "100", None, True, False])
def test_money_refuses_anything_but_an_int(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        Money(amount, "XOF")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["xof", "ABC", "", "EURO", "BTC"])
def test_money_refuses_an_unknown_currency(code: str) -> None:
    with pytest.raises(UnknownCurrency) as caught:
        Money(100, code)
    assert caught.value.code == code


def test_currency_knows_iso_exponents() -> None:
    assert (currency("XOF").exponent, currency("XAF").exponent) == (0, 0)
    assert (currency("EUR").exponent, currency("GHS").exponent) == (2, 2)
    with pytest.raises(UnknownCurrency):
        currency("ZZZ")


def test_money_is_an_immutable_value() -> None:
    money = Money(500, "XOF")
    assert money == Money(500, "XOF")
    assert money != Money(500, "XAF")
    with pytest.raises(AttributeError):
        money.amount = 1  # type: ignore[misc]


@pytest.mark.parametrize("amount", [0, -1, -10_000])
def test_payable_refuses_zero_and_negative(amount: int) -> None:
    with pytest.raises(InvalidAmount, match="greater than zero"):
        Money.payable(amount, "XOF")


@pytest.mark.parametrize("code", CODES)
def test_payable_accepts_one_and_the_cap_and_refuses_above(code: str) -> None:
    cap = currency(code).max_amount
    assert Money.payable(1, code) == Money(1, code)
    assert Money.payable(cap, code).amount == cap
    with pytest.raises(InvalidAmount, match="exceeds the maximum"):
        Money.payable(cap + 1, code)


def test_payable_honours_an_explicit_cap() -> None:
    assert Money.payable(50, "XOF", max_amount=50).amount == 50
    with pytest.raises(InvalidAmount):
        Money.payable(51, "XOF", max_amount=50)


@pytest.mark.parametrize("amount", [1.0, True])
def test_payable_refuses_non_integers(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        Money.payable(amount, "XOF")  # type: ignore[arg-type]


def test_payable_refuses_an_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        Money.payable(100, "ZZZ")


@given(
    a=st.integers(-(10**12), 10**12),
    b=st.integers(-(10**12), 10**12),
    code=st.sampled_from(CODES),
)
def test_arithmetic_in_one_currency_is_integer_arithmetic(a: int, b: int, code: str) -> None:
    assert Money(a, code) + Money(b, code) == Money(a + b, code)
    assert Money(a, code) - Money(b, code) == Money(a - b, code)
    assert -Money(a, code) == Money(-a, code)
    assert Money(a, code) + Money.zero(code) == Money(a, code)


@given(pair=st.lists(st.sampled_from(CODES), min_size=2, max_size=2, unique=True))
def test_arithmetic_across_currencies_is_refused(pair: list[str]) -> None:
    first, second = pair
    with pytest.raises(ValueError, match="currency mismatch"):
        _ = Money(1, first) + Money(1, second)
    with pytest.raises(ValueError, match="currency mismatch"):
        _ = Money(1, first) - Money(1, second)


def test_fixed_clock_is_aware_and_moves_only_when_told() -> None:
    clock = FixedClock()
    start = clock.now()
    assert start.tzinfo is not None
    assert clock.now() == start
    clock.advance(timedelta(days=1))
    assert clock.now() == start + timedelta(days=1)
    assert FixedClock(datetime(2030, 5, 1, tzinfo=UTC)).now().year == 2030
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2030, 5, 1))  # noqa: DTZ001


def test_new_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(2000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
