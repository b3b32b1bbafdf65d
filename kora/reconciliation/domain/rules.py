"""The configurable part of matching: the provider's fee schedule, the fallback time window,
the grace period after the settlement date, and which line types fit which payment types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from kora.reconciliation.domain.report import Direction, LineType


@dataclass(frozen=True, slots=True)
class FeeRule:
    """fee = clamp(fixed + amount * bps / 10 000 rounded half up, min_fee, max_fee), minor units."""

    bps: int = 0
    fixed: int = 0
    min_fee: int = 0
    max_fee: int | None = None

    def __post_init__(self) -> None:
        numbers = (self.bps, self.fixed, self.min_fee, self.max_fee if self.max_fee is not None else 0)
        if any(type(n) is not int or n < 0 for n in numbers) or self.bps > 10_000:
            raise ValueError("fee rule numbers are non-negative integers, bps at most 10 000")
        if self.max_fee is not None and self.max_fee < self.min_fee:
            raise ValueError("max_fee must be >= min_fee")

    def fee_for(self, amount: int) -> int:
        fee = self.fixed + (amount * self.bps + 5_000) // 10_000
        fee = max(fee, self.min_fee)
        return min(fee, self.max_fee) if self.max_fee is not None else fee


def _default_types() -> dict[LineType, frozenset[str]]:
    return {
        LineType.CASH_IN: frozenset({"cash_in", "merchant"}),
        LineType.CASH_OUT: frozenset({"cash_out"}),
        LineType.CARD: frozenset({"card"}),
        LineType.REFUND: frozenset({"refund"}),
        LineType.REVERSAL: frozenset({"cash_in", "cash_out", "merchant"}),
        LineType.CHARGEBACK: frozenset({"card"}),
    }


# Which way the money of a payment of this type goes, seen from Kora (the merchant).
PAYMENT_DIRECTION: Mapping[str, Direction] = {
    "cash_in": Direction.IN,
    "merchant": Direction.IN,
    "card": Direction.IN,
    "cash_out": Direction.OUT,
    "refund": Direction.OUT,
}


@dataclass(frozen=True, slots=True)
class MatchRules:
    """How one provider's lines are matched.

    - ``fees``: the provider's fee schedule per line type; a line type without a rule has its
      fee unchecked. A reversal refunds the original's fee (``-fee``) when
      ``reversal_refunds_fee``, else carries none.
    - ``fallback_window``: the amount + currency fallback accepts a line this far from the
      payment's capture time either way (absorbs cut-off and time-zone shifts); None disables it.
    - ``grace_period``: a payment the provider does not list is MISSING_PROVIDER only once
      ``as_of`` is past its settlement date + this grace; before that it is PENDING.
    - ``compatible_types``: which Kora payment types a line of each type may match.
    """

    fees: Mapping[LineType, FeeRule] = field(default_factory=dict)
    reversal_refunds_fee: bool = True
    fallback_window: timedelta | None = timedelta(hours=2)
    grace_period: timedelta = timedelta(days=1)
    compatible_types: Mapping[LineType, frozenset[str]] = field(default_factory=_default_types)

    def __post_init__(self) -> None:
        if self.fallback_window is not None and self.fallback_window < timedelta(0):
            raise ValueError("fallback_window must not be negative")
        if self.grace_period < timedelta(0):
            raise ValueError("grace_period must not be negative")

    def fits(self, line_type: LineType, payment_type: str) -> bool:
        return payment_type in self.compatible_types.get(line_type, frozenset())


class RulesError(ValueError):
    """A provider's match rules file is not valid."""


_RULE_KEYS = {"bps", "fixed", "min_fee", "max_fee"}
_BOOK_KEYS = {
    "provider",
    "description",
    "fees",
    "reversal_refunds_fee",
    "fallback_window_minutes",
    "grace_period_hours",
}


def rules_from_mapping(data: Mapping[str, object]) -> MatchRules:
    """A provider's match rules from their declarative form (a JSON object): the fee schedule per
    line type (``cash_in``, ``cash_out``, ``card``, ``refund``, ...), whether a reversal refunds
    the fee, the fallback window in minutes (null disables the amount fallback) and the grace
    period in hours. Unknown keys are refused, so a typo never silently disables a check."""
    unknown = set(data) - _BOOK_KEYS
    if unknown:
        raise RulesError(f"unknown keys: {', '.join(sorted(unknown))}")
    fees_data = data.get("fees", {})
    if not isinstance(fees_data, Mapping):
        raise RulesError("fees must be an object of line type → fee rule")
    fees: dict[LineType, FeeRule] = {}
    for kind, rule in fees_data.items():
        try:
            line_type = LineType(kind)
        except ValueError:
            raise RulesError(f"fees: unknown line type {kind!r}") from None
        if not isinstance(rule, Mapping) or set(rule) - _RULE_KEYS:
            raise RulesError(f"fees.{kind}: an object of {', '.join(sorted(_RULE_KEYS))}")
        try:
            fees[line_type] = FeeRule(**{key: rule[key] for key in rule})
        except (TypeError, ValueError) as exc:
            raise RulesError(f"fees.{kind}: {exc}") from None
    refunds = data.get("reversal_refunds_fee", True)
    window = data.get("fallback_window_minutes", 120)
    grace = data.get("grace_period_hours", 24)
    if not isinstance(refunds, bool):
        raise RulesError("reversal_refunds_fee must be true or false")
    if window is not None and (type(window) is not int or window < 0):
        raise RulesError("fallback_window_minutes must be a non-negative integer or null")
    if type(grace) is not int or grace < 0:
        raise RulesError("grace_period_hours must be a non-negative integer")
    return MatchRules(
        fees=fees,
        reversal_refunds_fee=refunds,
        fallback_window=None if window is None else timedelta(minutes=window),
        grace_period=timedelta(hours=grace),
    )
