"""Matching a provider's report lines against Kora's view of its payments.

Keys, in order: the provider's transaction id (Kora's ``provider_ref``), the provider's id of
the original (``provider_parent_id``, e.g. a card authorization), our reference (the payment
id Kora sent), then the configured fallback: same amount and currency within a time window of
the capture, used only when exactly one payment fits exactly one line. A key only counts when
the line type fits the payment type (``MatchRules.compatible_types``).

Outcomes: MATCHED; MISMATCH with reasons (currency, amount, fee, status, duplicate);
MISSING_INTERNAL (the provider has it, Kora has no final status for it or does not know it);
MISSING_PROVIDER (Kora has a captured payment no line of the report names, once its settlement
date + grace has passed as of ``as_of``); PENDING (not listed but not yet due: reported so the
caller can see it, never a discrepancy). Failed or still-pending payments the report does not
list are left out: nothing moved, or the provider has not finished.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kora.reconciliation.domain.report import Direction, LineStatus, LineType, ReportLine
from kora.reconciliation.domain.rules import PAYMENT_DIRECTION, MatchRules

SUCCEEDED_STATUSES = frozenset({"CAPTURED", "SETTLED", "REVERSED", "CHARGED_BACK"})
UNFINISHED_STATUSES = frozenset({"INITIATED", "AUTHORIZED"})
_LINE_TYPE_OF_PAYMENT = {
    "cash_in": LineType.CASH_IN,
    "merchant": LineType.CASH_IN,
    "cash_out": LineType.CASH_OUT,
    "card": LineType.CARD,
    "refund": LineType.REFUND,
}


class Outcome(enum.StrEnum):
    MATCHED = "MATCHED"
    MISMATCH = "MISMATCH"
    MISSING_INTERNAL = "MISSING_INTERNAL"
    MISSING_PROVIDER = "MISSING_PROVIDER"
    PENDING = "PENDING"


class Reason(enum.StrEnum):
    CURRENCY = "currency"
    AMOUNT = "amount"
    FEE = "fee"
    STATUS = "status"
    DUPLICATE = "duplicate"


class MatchKey(enum.StrEnum):
    PROVIDER_TXN_ID = "provider_txn_id"
    PROVIDER_PARENT_ID = "provider_parent_id"
    OUR_REFERENCE = "our_reference"
    FALLBACK = "fallback"


class Resolution(enum.StrEnum):
    """What the service may do on its own: settle the payment, ask the core for its status,
    wait, or nothing; everything else goes to people (review)."""

    NONE = "none"
    SETTLE = "settle"
    QUERY_STATUS = "query_status"
    WAIT = "wait"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class InternalTxn:
    """Kora's view of one provider payment (built from ``payment.status_changed`` events).
    Amounts in minor units; ``status`` is the core's (CAPTURED, SETTLED, FAILED, ...)."""

    payment_id: str
    provider: str | None
    provider_ref: str | None
    our_reference: str | None
    type: str
    status: str
    amount: int
    fee: int
    currency: str
    captured_at: datetime | None
    settlement_due: datetime | None
    captured_amount: int | None = None

    def __post_init__(self) -> None:
        if type(self.amount) is not int or self.amount <= 0:
            raise ValueError("amount must be a positive integer of minor units")
        for at in (self.captured_at, self.settlement_due):
            if at is not None and at.tzinfo is None:
                raise ValueError("times must be timezone-aware")

    @property
    def settled_amount(self) -> int:
        """What the provider should report: the captured amount of a card payment, else the amount."""
        return self.captured_amount if self.captured_amount is not None else self.amount


@dataclass(frozen=True, slots=True)
class MatchResult:
    outcome: Outcome
    line: ReportLine | None
    internal: InternalTxn | None
    reasons: tuple[Reason, ...] = ()
    matched_by: MatchKey | None = None
    auto_resolution: Resolution = Resolution.REVIEW
    detail: str = ""

    @property
    def reason(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None


def match(
    lines: Sequence[ReportLine], internal: Sequence[InternalTxn], *, rules: MatchRules, as_of: datetime
) -> list[MatchResult]:
    """One result per line (in line order), then one per listed-but-unreported payment.
    ``internal`` is what the caller expects on this report (one provider, the report's days)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return _Matcher(internal, rules).run(lines, as_of)


class _Index:
    """Payments by one of their keys, in the order given. Almost every key names one payment:
    only the others get a list (a million payments, two keys each, make no 2 million lists)."""

    __slots__ = ("more", "one")

    def __init__(self) -> None:
        self.one: dict[str, InternalTxn] = {}
        self.more: dict[str, list[InternalTxn]] = {}

    def add(self, key: str, txn: InternalTxn) -> None:
        if key not in self.one:
            self.one[key] = txn
        elif key in self.more:
            self.more[key].append(txn)
        else:
            self.more[key] = [self.one[key], txn]

    def get(self, key: str) -> Sequence[InternalTxn]:
        if key in self.more:
            return self.more[key]
        found = self.one.get(key)
        return () if found is None else (found,)


class _Matcher:
    def __init__(self, internal: Sequence[InternalTxn], rules: MatchRules) -> None:
        self.internal = internal
        self.rules = rules
        self.by_provider_ref = _Index()
        self.by_our_reference = _Index()
        for txn in internal:
            if txn.provider_ref:
                self.by_provider_ref.add(txn.provider_ref, txn)
            if txn.our_reference:
                self.by_our_reference.add(txn.our_reference, txn)
        self.primary: dict[str, ReportLine] = {}  # payment id -> its line
        self.reversal: dict[str, ReportLine] = {}
        self.seen: dict[tuple[str, LineType], InternalTxn | None] = {}
        self.reported: set[str] = set()  # payments with any line in this report

    def run(self, lines: Sequence[ReportLine], as_of: datetime) -> list[MatchResult]:
        results: list[MatchResult | None] = []
        deferred: list[int] = []
        for line in lines:
            identity = (line.provider_txn_id, line.type)
            if identity in self.seen:
                first = self.seen[identity]
                results.append(_result(Outcome.MISMATCH, line, first, (Reason.DUPLICATE,), None, "listed twice"))
                continue
            txn, key = self._find(line)
            self.seen[identity] = txn
            if txn is not None and key is not None:
                results.append(self._judge(line, txn, key))
            elif self._may_fall_back(line):
                deferred.append(len(results))
                results.append(None)
            else:
                results.append(_missing_internal(line, "no payment has this line's keys"))
        for index, result in self._fall_back([lines[i] for i in deferred], deferred):
            results[index] = result
        done = [result for result in results if result is not None]
        return done + self._unreported(as_of)

    # keys ---------------------------------------------------------------------------------
    def _find(self, line: ReportLine) -> tuple[InternalTxn | None, MatchKey | None]:
        keys = (
            (MatchKey.PROVIDER_TXN_ID, self.by_provider_ref, line.provider_txn_id),
            (MatchKey.PROVIDER_PARENT_ID, self.by_provider_ref, line.provider_parent_id),
            (MatchKey.OUR_REFERENCE, self.by_our_reference, line.our_reference),
        )
        for key, index, value in keys:
            if not value:
                continue
            found = index.get(value)
            fitting = [txn for txn in found if self.rules.fits(line.type, txn.type)]
            if len(fitting) == 1:
                return fitting[0], key
        return None, None

    def _may_fall_back(self, line: ReportLine) -> bool:
        return (
            self.rules.fallback_window is not None
            and not line.type.is_adjustment
            and line.status is LineStatus.SUCCEEDED
        )

    def _fall_back(self, lines: list[ReportLine], indexes: list[int]) -> list[tuple[int, MatchResult]]:
        window = self.rules.fallback_window
        candidates: dict[int, list[InternalTxn]] = {}
        # Only payments of the line's currency and amount can fit: indexed so, a report's
        # unknown lines cost one look-up each instead of a pass over every payment.
        by_amount: dict[tuple[str, int], list[InternalTxn]] = {}
        if lines:
            for txn in self.internal:
                by_amount.setdefault((txn.currency, txn.settled_amount), []).append(txn)
        for position, line in enumerate(lines):
            candidates[position] = [
                txn
                for txn in by_amount.get((line.currency, line.amount), ())
                if txn.payment_id not in self.primary
                and self.rules.fits(line.type, txn.type)
                and txn.currency == line.currency
                and txn.settled_amount == line.amount
                and txn.provider_ref in (None, line.provider_txn_id)
                and txn.captured_at is not None
                and window is not None
                and abs(txn.captured_at - line.occurred_at) <= window
            ]
        claims: dict[str, int] = {}
        for found in candidates.values():
            for txn in found:
                claims[txn.payment_id] = claims.get(txn.payment_id, 0) + 1
        out: list[tuple[int, MatchResult]] = []
        for position, line in enumerate(lines):
            found = candidates[position]
            if len(found) == 1 and claims[found[0].payment_id] == 1:
                self.seen[(line.provider_txn_id, line.type)] = found[0]
                out.append((indexes[position], self._judge(line, found[0], MatchKey.FALLBACK)))
            elif found:
                out.append((indexes[position], _missing_internal(line, "ambiguous: several payments fit")))
            else:
                out.append((indexes[position], _missing_internal(line, "no payment has this line's keys")))
        return out

    # judging ------------------------------------------------------------------------------
    def _judge(self, line: ReportLine, txn: InternalTxn, key: MatchKey) -> MatchResult:
        self.reported.add(txn.payment_id)
        claimed = self.reversal if line.type is LineType.REVERSAL else self.primary
        if line.type is not LineType.CHARGEBACK:
            if txn.payment_id in claimed:
                return _result(Outcome.MISMATCH, line, txn, (Reason.DUPLICATE,), key, "a second line for this payment")
            claimed[txn.payment_id] = line
        if not line.type.is_adjustment and txn.status in UNFINISHED_STATUSES:
            return MatchResult(
                Outcome.MISSING_INTERNAL, line, txn, (), key, Resolution.QUERY_STATUS, "Kora has no final status"
            )
        reasons = self._differences(line, txn)
        if not reasons:
            settle = not line.type.is_adjustment and line.status is LineStatus.SUCCEEDED and txn.status == "CAPTURED"
            return MatchResult(Outcome.MATCHED, line, txn, (), key, Resolution.SETTLE if settle else Resolution.NONE)
        ahead = reasons == [Reason.STATUS] and _provider_is_ahead(line, txn)
        resolution = Resolution.QUERY_STATUS if ahead else Resolution.REVIEW
        detail = f"provider {line.status} {line.type}, Kora {txn.status}" if Reason.STATUS in reasons else ""
        return MatchResult(Outcome.MISMATCH, line, txn, tuple(reasons), key, resolution, detail)

    def _differences(self, line: ReportLine, txn: InternalTxn) -> list[Reason]:
        reasons: list[Reason] = []
        payment_direction = PAYMENT_DIRECTION.get(txn.type)
        expected_fee: int | None
        if line.type is LineType.REVERSAL:
            direction = payment_direction.opposite() if payment_direction is not None else None
            rule = self.rules.fees.get(_LINE_TYPE_OF_PAYMENT.get(txn.type, line.type))
            if not self.rules.reversal_refunds_fee:
                expected_fee = 0
            else:
                expected_fee = -rule.fee_for(txn.settled_amount) if rule is not None else None
            amount_ok = line.amount == txn.settled_amount
            status_ok = txn.status == "REVERSED"
        elif line.type is LineType.CHARGEBACK:
            direction = Direction.OUT
            rule = self.rules.fees.get(LineType.CHARGEBACK)
            expected_fee = rule.fee_for(line.amount) if rule is not None else None
            amount_ok = line.amount <= txn.settled_amount
            status_ok = txn.status == "CHARGED_BACK"
        else:
            direction = payment_direction
            rule = self.rules.fees.get(line.type)
            failed = line.status is LineStatus.FAILED
            expected_fee = 0 if failed else rule.fee_for(line.amount) if rule is not None else None
            amount_ok = line.amount == txn.settled_amount
            status_ok = _primary_status_fits(line.status, txn.status)
        if line.currency != txn.currency:
            reasons.append(Reason.CURRENCY)
        else:
            if not amount_ok or (line.direction is not None and direction is not None and line.direction != direction):
                reasons.append(Reason.AMOUNT)
            if line.fee is not None and expected_fee is not None and line.fee != expected_fee:
                reasons.append(Reason.FEE)
        if not status_ok:
            reasons.append(Reason.STATUS)
        return reasons

    # payments the report does not list ----------------------------------------------------
    def _unreported(self, as_of: datetime) -> list[MatchResult]:
        results: list[MatchResult] = []
        for txn in sorted(self.internal, key=lambda t: t.payment_id):
            if txn.payment_id in self.reported or txn.status not in SUCCEEDED_STATUSES:
                continue
            due = txn.settlement_due or txn.captured_at
            if due is not None and as_of >= due + self.rules.grace_period:
                detail = f"not listed; settlement was due {due.isoformat()}"
                results.append(MatchResult(Outcome.MISSING_PROVIDER, None, txn, (), None, Resolution.REVIEW, detail))
            else:
                results.append(MatchResult(Outcome.PENDING, None, txn, (), None, Resolution.WAIT, "not yet due"))
        return results


def _primary_status_fits(line_status: LineStatus, payment_status: str) -> bool:
    if line_status is LineStatus.SUCCEEDED:
        return payment_status in SUCCEEDED_STATUSES
    if line_status is LineStatus.FAILED:
        return payment_status == "FAILED"
    if line_status is LineStatus.REVERSED:
        return payment_status == "REVERSED"
    return payment_status == "CHARGED_BACK"


def _provider_is_ahead(line: ReportLine, txn: InternalTxn) -> bool:
    """The provider reports a later state the core has not heard of yet: asking the core to
    query the provider can settle it without people."""
    if line.type is LineType.REVERSAL or line.status is LineStatus.REVERSED:
        return txn.status in ("CAPTURED", "SETTLED")
    return line.status is LineStatus.SUCCEEDED and txn.status == "FAILED"


def _result(
    outcome: Outcome,
    line: ReportLine,
    txn: InternalTxn | None,
    reasons: tuple[Reason, ...],
    key: MatchKey | None,
    detail: str,
) -> MatchResult:
    return MatchResult(outcome, line, txn, reasons, key, Resolution.REVIEW, detail)


def _missing_internal(line: ReportLine, detail: str) -> MatchResult:
    resolution = Resolution.QUERY_STATUS if line.status is LineStatus.SUCCEEDED else Resolution.REVIEW
    return MatchResult(Outcome.MISSING_INTERNAL, line, None, (), None, resolution, detail)
