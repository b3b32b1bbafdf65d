"""Shared kernel: pure value objects every module's domain may use (money, ids, clock).

Nothing here does I/O or imports a framework.
"""

from kora.kernel.clock import Clock, FixedClock, SystemClock
from kora.kernel.ids import new_id
from kora.kernel.money import Currency, InvalidAmount, Money, UnknownCurrency, currency

__all__ = [
    "Clock",
    "Currency",
    "FixedClock",
    "InvalidAmount",
    "Money",
    "SystemClock",
    "UnknownCurrency",
    "currency",
    "new_id",
]
