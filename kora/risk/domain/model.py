"""What an assessment reads (the request and its context) and what it returns (a decision).

The request is what the payment path knows about one payment; the context is what the risk
store knows about the payer's (and the payee's) recent activity. Both are plain values, so the
assessment is a pure function that support can replay and a test can pin down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from kora.kernel.money import currency as _currency


class PaymentType(StrEnum):
    P2P = "p2p"
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"
    MERCHANT = "merchant"
    CARD = "card"


class Window(StrEnum):
    """A rolling window ending at the payment's time (not a calendar period)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def length(self) -> timedelta:
        return _LENGTHS[self]


_LENGTHS = {
    Window.HOUR: timedelta(hours=1),
    Window.DAY: timedelta(days=1),
    Window.WEEK: timedelta(days=7),
    Window.MONTH: timedelta(days=30),
}


class Outcome(IntEnum):
    """Ordered by severity, so the decision is the most severe outcome any rule asks for."""

    ALLOW = 0
    REVIEW = 1
    DENY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class RiskRequestError(ValueError):
    """A request the assessment cannot read (empty id, naive time, bad amount, unknown currency)."""


@dataclass(frozen=True, slots=True)
class RiskRequest:
    """One payment to assess. `tier` is the payer's KYC tier as the policy names it (`tier0`,
    `tier1`, ...): the core has no KYC tier yet, so the caller supplies it. `payer_id` and
    `payee_id` are opaque wallet ids, never phone numbers. `amount` is in minor units."""

    payer_id: str
    payee_id: str
    amount: int
    currency: str
    type: PaymentType
    device_id: str
    tier: str
    at: datetime

    def __post_init__(self) -> None:
        if not (self.payer_id and self.payee_id and self.device_id and self.tier):
            raise RiskRequestError("payer_id, payee_id, device_id and tier must not be empty")
        if type(self.amount) is not int or self.amount <= 0:
            raise RiskRequestError("amount must be a positive integer in minor units")
        if self.at.tzinfo is None or self.at.utcoffset() != timedelta(0):
            raise RiskRequestError("at must be a timezone-aware UTC datetime")
        try:
            _currency(self.currency)
        except ValueError as exc:
            raise RiskRequestError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Usage:
    """Amount (minor units) and count already used in a window, holds included."""

    amount: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the payer and payee have already done, as seen just before this payment.

    Every figure excludes the payment being assessed and includes money still on hold
    (reviewed or authorized payments), so a cap counts reservations, not only captures.
    The windows are the policy's: `payer_usage` and `recipient_usage` are for the request's
    payment type; the sets and amounts for the flags cover the windows the policy's flags name.
    """

    payer_usage: Mapping[Window, Usage] = field(default_factory=dict)
    # payer -> this payee, same payment type
    recipient_usage: Mapping[Window, Usage] = field(default_factory=dict)
    # when this payer was first seen on this device; None = never before
    device_first_seen: datetime | None = None
    # the payer has paid this payee before (any time)
    known_recipient: bool = False
    # distinct payees of the payer within the fan-out window
    recent_recipients: frozenset[str] = frozenset()
    # distinct senders to the payee within the fan-in window
    recent_senders_to_payee: frozenset[str] = frozenset()
    # the payer's amounts of the request's type within the structuring window
    recent_amounts: tuple[int, ...] = ()
    # the payer's cash-in total within the layering window
    recent_cash_in: int = 0
    # the payer's past payments by hour of day (UTC): 24 counts, and 24 amount totals
    hour_histogram: tuple[int, ...] = (0,) * 24
    hour_amounts: tuple[int, ...] = (0,) * 24

    def usage(self, window: Window) -> Usage:
        return self.payer_usage.get(window, Usage())

    def usage_with_recipient(self, window: Window) -> Usage:
        return self.recipient_usage.get(window, Usage())


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule fired: the rule id (`limit.amount.day`, `flag.fan_out`), what it asks for
    (`deny`, `review`, or `score` for an anomaly flag), the limit and the observed value
    (minor units for amounts, a count otherwise), the window if any, and the flag's points."""

    rule: str
    effect: str
    limit: int | None
    observed: int
    window: str | None = None
    points: int = 0
    cooled: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "effect": self.effect,
            "limit": self.limit,
            "observed": self.observed,
            "window": self.window,
            "points": self.points,
            "cooled": self.cooled,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The assessment's answer, with every reason, the score and the policy version."""

    outcome: Outcome
    reasons: tuple[Reason, ...]
    score: int
    policy_version: str

    @property
    def rules(self) -> frozenset[str]:
        return frozenset(reason.rule for reason in self.reasons)

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.label,
            "score": self.score,
            "policy_version": self.policy_version,
            "reasons": [reason.as_dict() for reason in self.reasons],
        }
