"""What the KPIs mean, with no I/O: the time range asked for, how a failure code reads as a
cause, how a status counts, exact nearest-rank percentiles and ratios.

Everything here is pure: the SQL read side (`queries.py`) gathers counts, this module says what
they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

MAX_RANGE = timedelta(days=92)  # a quarter: beyond it the console asks for months, not a scan
PERCENTILES = (50, 95, 99)

# Statuses a payment cohort is counted under.
SUCCEEDED_STATUSES = frozenset({"CAPTURED", "SETTLED", "REVERSED", "CHARGED_BACK"})  # money moved (at least once)
REVERSED_STATUSES = frozenset({"REVERSED", "CHARGED_BACK"})  # moved, then given back
PENDING_STATUSES = frozenset({"INITIATED", "AUTHORIZED"})  # no definite answer yet
FAILED_STATUS = "FAILED"


class InvalidRange(ValueError):
    """The `from`/`to` asked for are not a usable range. `code` is the stable error code."""

    code = "invalid_range"


@dataclass(frozen=True, slots=True)
class KpiRange:
    """[start, end) in UTC, both timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidRange("the range needs timezone-aware datetimes")
        if self.end <= self.start:
            raise InvalidRange("`to` must be after `from`")
        if self.end - self.start > MAX_RANGE:
            raise InvalidRange(f"the range is at most {MAX_RANGE.days} days")

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The last UTC day the range touches (the day of the instant just before `end`)."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def whole_days(self) -> bool:
        midnight = time(0, tzinfo=UTC)
        return self.start.timetz() == midnight and self.end.timetz() == midnight


def parse_range(raw_from: str | None, raw_to: str | None, *, now: datetime) -> KpiRange:
    """The range for `from` and `to` as ISO dates (`2026-03-10`, whole UTC days, `to` included)
    or ISO datetimes (`2026-03-10T08:00:00Z`, `to` excluded; without an offset, UTC). Either
    may be absent: `from` defaults to the start of `to`'s day (else today), `to` to the end of
    `from`'s day. Raises InvalidRange."""
    start = _instant(raw_from, "from", end_of_day=False)
    end = _instant(raw_to, "to", end_of_day=True)
    if start is None and end is None:
        start = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    if start is None:
        assert end is not None
        start = datetime.combine((end - timedelta(microseconds=1)).date(), time(0), tzinfo=UTC)
    if end is None:
        end = datetime.combine(start.date() + timedelta(days=1), time(0), tzinfo=UTC)
    return KpiRange(start, end)


def _instant(raw: str | None, name: str, *, end_of_day: bool) -> datetime | None:
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if len(text) > 40:
        raise InvalidRange(f"`{name}` is not an ISO date or datetime")
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidRange(f"`{name}` is not an ISO date (YYYY-MM-DD)") from None
        return datetime.combine(day + timedelta(days=1) if end_of_day else day, time(0), tzinfo=UTC)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRange(f"`{name}` is not an ISO date or datetime") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class FailureCause(StrEnum):
    """Why a payment failed, read from its failure code."""

    DECLINED = "declined"  # the payer's side or the provider refused it for a business reason
    PROVIDER_ERROR = "provider_error"  # the provider (or acquirer) was unavailable, erred or never answered
    CANCELLED = "cancelled"  # nobody failed: voided or let expire by the merchant (not in the success rate)
    RISK = "risk"  # refused by the risk engine (denied, or rejected by a risk analyst)
    OTHER = "other"  # a code Kora does not classify (still counted as a failure)


_PROVIDER_ERROR_CODES = frozenset(
    {
        "provider_unresolved",
        "status_unreachable",
        "provider_contradiction",
        "acquirer_unavailable",
        "authorization_unresolved",
        "refund_unresolved",
        "processing_error",
        "timeout",
        "failed",  # a provider that said "failed" without a reason
    }
)
_PROVIDER_ERROR_PREFIXES = ("provider_unavailable", "rejected_", "unexpected_status_", "conflict_")
_CANCELLED_CODES = frozenset({"voided", "authorization_expired", "authorization_voided"})
_DECLINED_CODES = frozenset(
    {
        "provider_declined",
        "insufficient_funds",
        "payer_not_found",
        "payee_not_found",
        "account_not_found",
        "not_enough_funds",
        "limit_exceeded",
        "exceeds_limit",
        "do_not_honor",
        "invalid_card",
        "expired_card",
        "invalid_currency",
        "card_declined",
        "authorization_declined",
        "amount_too_large",
        "invalid_request",
        "reversed",
        "declined",
    }
)


def failure_cause(code: str | None) -> FailureCause:
    """The cause a failure code stands for (codes are Kora's words, see the provider adapters)."""
    if not code:
        return FailureCause.OTHER
    word = code.lower()
    if word.startswith("risk"):  # risk_denied, risk_rejected (the SLO's cause `risk` too)
        return FailureCause.RISK
    if word in _CANCELLED_CODES:
        return FailureCause.CANCELLED
    if word in _PROVIDER_ERROR_CODES or word.startswith(_PROVIDER_ERROR_PREFIXES):
        return FailureCause.PROVIDER_ERROR
    if word in _DECLINED_CODES or word.endswith(("_declined", "_not_found", "_funds")):
        return FailureCause.DECLINED
    return FailureCause.OTHER


def nearest_rank(values: Sequence[int], percentile: int) -> int | None:
    """The exact nearest-rank percentile of `values` (sorted ascending): the smallest value with
    at least `percentile`% of the values at or below it. None when there are none."""
    if not values:
        return None
    if not 0 < percentile <= 100:
        raise ValueError("percentile must be in 1..100")
    rank = math.ceil(percentile * len(values) / 100)
    return values[rank - 1]


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator to 6 decimals; None when there is nothing to divide by."""
    if denominator <= 0:
        return None
    return round(numerator / denominator, 6)
