"""Money as integers in minor units. No floats anywhere.

A `Money` refuses bare numbers of the wrong type, unknown currencies, and arithmetic across
currencies. Exponents follow ISO 4217 (XOF and XAF have no minor unit).
"""

from __future__ import annotations

from dataclasses import dataclass


class UnknownCurrency(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown or unsupported currency {code!r}")
        self.code = code


class InvalidAmount(ValueError):
    """An amount that is not a positive integer in minor units, or above the allowed maximum."""


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int
    # Largest amount a single payment may carry, in minor units (operational safety cap).
    max_amount: int


_CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("XOF", 0, 10_000_000),
        Currency("XAF", 0, 10_000_000),
        Currency("GHS", 2, 20_000_000),
        Currency("NGN", 2, 1_000_000_000),
        Currency("EUR", 2, 2_000_000),
        Currency("USD", 2, 2_000_000),
    )
}

DEFAULT_CURRENCY = "XOF"


def currency(code: str) -> Currency:
    """The supported currency with this ISO 4217 code, or UnknownCurrency."""
    try:
        return _CURRENCIES[code]
    except KeyError:
        raise UnknownCurrency(code) from None


def supported_currencies() -> tuple[str, ...]:
    return tuple(_CURRENCIES)


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:  # bool and float are refused on purpose
            raise InvalidAmount("amount must be an integer number of minor units")
        currency(self.currency)

    @classmethod
    def payable(cls, amount: int, code: str, *, max_amount: int | None = None) -> Money:
        """A strictly positive amount no larger than the currency's cap (or `max_amount`)."""
        money = cls(amount, code)
        cap = max_amount if max_amount is not None else currency(code).max_amount
        if amount <= 0:
            raise InvalidAmount("amount must be greater than zero")
        if amount > cap:
            raise InvalidAmount(f"amount exceeds the maximum of {cap} minor units for {code}")
        return money

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    @classmethod
    def zero(cls, code: str) -> Money:
        return cls(0, code)
