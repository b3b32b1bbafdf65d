"""The merchant fee schedule: basis points of the amount, rounded half up to a whole minor unit,
never below the minimum, integer arithmetic only; a fee that would not be less than the amount
refuses the payment."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kora.payments import FeeSchedule, InvalidFee
from kora.payments.service.merchant import MerchantPayments
from tests.fakes import make_service


@pytest.mark.parametrize(
    ("amount", "fee"),
    [
        (1, 0),  # 0.01 → 0
        (49, 0),  # 0.49 → 0
        (50, 1),  # 0.5 → 1: half rounds up
        (149, 1),  # 1.49 → 1
        (150, 2),  # 1.5 → 2
        (10_000, 100),
        (10_000_000, 100_000),
    ],
)
def test_one_percent_rounds_half_up(amount: int, fee: int) -> None:
    assert FeeSchedule(bps=100).fee_for(amount) == fee


def test_the_minimum_fee_applies_to_small_amounts() -> None:
    fees = FeeSchedule(bps=100, minimum=25)
    assert fees.fee_for(100) == 25
    assert fees.fee_for(2_500) == 25
    assert fees.fee_for(2_600) == 26


def test_no_fee_at_all() -> None:
    assert FeeSchedule(bps=0).fee_for(10_000_000) == 0


@pytest.mark.parametrize(("bps", "minimum"), [(-1, 0), (10_000, 0), (100, -1)])
def test_a_nonsensical_schedule_is_refused(bps: int, minimum: int) -> None:
    with pytest.raises(ValueError, match="merchant fee"):
        FeeSchedule(bps=bps, minimum=minimum)


@given(amount=st.integers(min_value=1, max_value=10**12), bps=st.integers(min_value=0, max_value=9_999))
def test_the_fee_is_the_exact_rate_rounded_half_up(amount: int, bps: int) -> None:
    exact = Fraction(amount * bps, 10_000)
    fee = FeeSchedule(bps=bps).fee_for(amount)
    assert isinstance(fee, int)
    assert exact - Fraction(1, 2) < fee <= exact + Fraction(1, 2)
    assert 0 <= fee <= amount


def test_a_fee_not_less_than_the_amount_refuses_the_payment() -> None:
    _, h = make_service()
    payments = MerchantPayments(
        uow_factory=h.uow_factory,
        directory=h.directory,
        providers=h.providers,
        clock=h.clock,
        config=h.config,
        fees=FeeSchedule(bps=100, minimum=10),
    )
    with pytest.raises(InvalidFee):
        payments.fee_for(10)
    assert payments.fee_for(11) == 10
