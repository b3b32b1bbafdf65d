"""What a settlement report says once parsed: lines in Kora's words, and the lines that
could not be read (quarantined with their reason, never dropped)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class LineType(enum.StrEnum):
    """A report line's kind in Kora's words (the dialect maps the provider's words to these)."""

    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"
    CARD = "card"  # a card capture
    REFUND = "refund"
    REVERSAL = "reversal"
    CHARGEBACK = "chargeback"

    @property
    def is_adjustment(self) -> bool:
        """Reversals and chargebacks undo (part of) an earlier payment instead of being one."""
        return self in (LineType.REVERSAL, LineType.CHARGEBACK)


class LineStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"
    CHARGED_BACK = "charged_back"


class Direction(enum.StrEnum):
    """Which way the money went, seen from the merchant (Kora): in or out."""

    IN = "in"
    OUT = "out"

    def opposite(self) -> Direction:
        return Direction.OUT if self is Direction.IN else Direction.IN


class QuarantineReason(enum.StrEnum):
    WRONG_COLUMN_COUNT = "wrong_column_count"
    BAD_ENCODING = "bad_encoding"
    EMPTY_LINE = "empty_line"
    EMPTY_ID = "empty_id"
    BAD_DATE = "bad_date"
    BAD_AMOUNT = "bad_amount"
    UNKNOWN_STATUS = "unknown_status"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_CURRENCY = "unknown_currency"
    NET_MISMATCH = "net_mismatch"


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One provider line. ``amount`` is the magnitude in minor units (> 0) and ``direction``
    its sign from the merchant's side (None when the dialect cannot tell); ``fee`` and ``net``
    are signed as the provider wrote them (a refunded fee is negative), None without a column."""

    line_number: int
    provider_txn_id: str
    our_reference: str | None
    provider_parent_id: str | None
    occurred_at: datetime
    status: LineStatus
    type: LineType
    amount: int
    direction: Direction | None
    fee: int | None
    net: int | None
    currency: str


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A line that could not be read: its 1-based line number in the file, why, and the raw text."""

    line_number: int
    reason: QuarantineReason
    raw: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ParsedReport:
    dialect: str
    digest: str
    lines: list[ReportLine] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
