"""Amounts on the wire (decimal strings in major units, as MoMo and Wave send them) to and
from integer minor units. No floats."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from kora.kernel import currency


class BadAmount(ValueError):
    pass


def parse_major(value: str, currency_code: str) -> int:
    """``"1500"`` XOF → 1500; ``"10.50"`` GHS → 1050. BadAmount for anything else."""
    if not isinstance(value, str) or not value or value.strip() != value:
        raise BadAmount("amount must be a decimal string")
    try:
        exponent = currency(currency_code).exponent
        number = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise BadAmount(str(exc)) from None
    if not number.is_finite() or number <= 0:
        raise BadAmount("amount must be positive")
    minor = number.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise BadAmount(f"too many decimals for {currency_code}")
    return int(minor)


def format_major(minor: int, currency_code: str, *, places: int | None = None) -> str:
    """1050 GHS → ``"10.50"``; ``places`` forces the number of decimals (``"1500.00"``)."""
    exponent = currency(currency_code).exponent
    number = Decimal(minor).scaleb(-exponent)
    digits = exponent if places is None else places
    return f"{number:.{digits}f}"
