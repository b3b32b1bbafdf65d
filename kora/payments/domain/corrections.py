"""Corrections a reconciliation case ends with, as pure rules: who may post one (two different
people, maker-checker), how much, and which accounts it moves between.

A correction never edits the books: it is one new, balanced journal transaction, attached to
the payment it is about (ADR 0002, 0023). The three kinds, debit → credit:

| kind | CASH_IN / CARD payment | CASH_OUT / provider REFUND payment |
|---|---|---|
| write_off | suspense → provider clearing (P) | provider clearing (P) → suspense |
| manual_credit | suspense → customer wallet | suspense → customer wallet |
| manual_debit | customer wallet → suspense | customer wallet → suspense |

`write_off` closes what the payment's capture left open on provider clearing and the provider
will never settle: a cash-in's capture debited clearing (the provider owes us), so writing it
off credits clearing and parks the loss on suspense; a cash-out's capture credited clearing (we
owe the provider), so writing it off debits clearing and parks the gain on suspense. It is the
settlement posting with suspense in place of the bank (kora/payments/service/settlement.py),
allowed only on a CAPTURED payment (a SETTLED one has nothing left on clearing).
`manual_credit` / `manual_debit` move money between suspense and the customer wallet the
payment credited (cash-in) or debited (cash-out); a debit never takes the wallet below zero.
Finance then clears suspense from the case records.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from kora.payments.domain.errors import InvalidPaymentAmount
from kora.payments.domain.model import Payment, PaymentError, PaymentStatus, PaymentType

# Operators are named by opaque ids (the core user's id, optionally `user:<id>`): no spaces,
# no `+` or `@`, so neither a name, an e-mail nor a formatted phone number fits.
OPERATOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_OPERATOR = re.compile(OPERATOR_PATTERN)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DIGIT_RUN = re.compile(r"\d{8,}")
# The reason is the reviewers' own words (the case's note): the core binds it to the request
# (idempotency fingerprint) and audits its SHA-256 only, never the text — the note stays with
# the case, in the reconciliation service's own audit chain.
MAX_REASON_LENGTH = 200

Side = Literal["clearing", "suspense", "wallet"]


class CorrectionKind(enum.StrEnum):
    WRITE_OFF = "write_off"
    MANUAL_CREDIT = "manual_credit"
    MANUAL_DEBIT = "manual_debit"


class MakerCheckerViolation(PaymentError):
    """The person who proposed a correction also approved it."""

    code = "maker_checker_violation"


class InvalidCorrection(PaymentError):
    code = "invalid_correction"


class CorrectionNotApplicable(PaymentError):
    """This kind of correction cannot apply to this payment (its type or status)."""

    code = "correction_not_applicable"


class CorrectionAlreadyPosted(PaymentError):
    """The payment already has a correction of this kind (from another case)."""

    code = "correction_already_posted"


@dataclass(frozen=True, slots=True)
class CorrectionCommand:
    """Post the correction an approved reconciliation case decided. `actor` is the calling
    service (`service:<name>`), `idempotency_scope` its key scope; the key is the case id."""

    case_id: uuid.UUID
    payment_id: uuid.UUID
    kind: CorrectionKind
    amount: int
    currency: str
    reason: str
    proposed_by: str
    approved_by: str
    actor: str
    idempotency_scope: str
    idempotency_key: str | None
    correlation_id: str | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return {
            "case_id": str(self.case_id),
            "payment_id": str(self.payment_id),
            "kind": self.kind.value,
            "amount": self.amount,
            "currency": self.currency,
            "reason": self.reason,
            "proposed_by": self.proposed_by,
            "approved_by": self.approved_by,
        }


def check_request(cmd: CorrectionCommand, *, max_amount: int) -> None:
    """What can be refused before reading anything: maker-checker, the key, the amount, the
    shape of the operator ids and the reason. Raises MakerCheckerViolation, InvalidCorrection,
    InvalidPaymentAmount."""
    if not all(_is_operator_id(operator) for operator in (cmd.proposed_by, cmd.approved_by)):
        raise InvalidCorrection("proposed_by and approved_by are operator ids (the core user's id), never a number")
    if same_operator(cmd.proposed_by, cmd.approved_by):
        raise MakerCheckerViolation("a correction needs two different people: the proposer cannot approve it")
    reason = cmd.reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH or not reason.isprintable():
        raise InvalidCorrection(f"reason: 1 to {MAX_REASON_LENGTH} printable characters")
    if cmd.idempotency_key != str(cmd.case_id):
        raise InvalidCorrection("the Idempotency-Key of a correction is its case id")
    if isinstance(cmd.amount, bool) or not isinstance(cmd.amount, int):
        raise InvalidCorrection("amount is an integer number of minor units")
    if cmd.amount <= 0:
        raise InvalidPaymentAmount("amount must be a positive number of minor units")
    if cmd.amount > max_amount:
        raise InvalidCorrection(f"amount above the largest correction allowed ({max_amount} minor units)")


def _is_operator_id(value: str) -> bool:
    """An opaque id: the allowed characters, and no run of 8+ digits outside a UUID (a phone
    or account number written bare)."""
    return bool(_OPERATOR.fullmatch(value)) and not _DIGIT_RUN.search(_UUID.sub("-", value))


def same_operator(a: str, b: str) -> bool:
    """Whether two operator ids name the same person: `user:<id>` and `<id>` do, whatever the case."""

    def bare(operator: str) -> str:
        return operator.lower().removeprefix("user:")

    return bare(a) == bare(b)


# Which side of provider clearing each provider-settled payment type's capture posted.
_CLEARING_SIDE_AT_CAPTURE: dict[PaymentType, Literal["debit", "credit"]] = {
    PaymentType.CASH_IN: "debit",
    PaymentType.CARD: "debit",
    PaymentType.CASH_OUT: "credit",
    PaymentType.REFUND: "credit",
}


@dataclass(frozen=True, slots=True)
class CorrectionPlan:
    debit: Side
    credit: Side


def plan_correction(kind: CorrectionKind, payment: Payment) -> CorrectionPlan:
    """Which accounts the correction moves between for this payment (see the module's table).
    Raises CorrectionNotApplicable."""
    if kind is CorrectionKind.WRITE_OFF:
        side = _CLEARING_SIDE_AT_CAPTURE.get(payment.type)
        if side is None or payment.provider is None:
            raise CorrectionNotApplicable("a write-off applies to a provider payment only")
        if payment.status is not PaymentStatus.CAPTURED:
            raise CorrectionNotApplicable("a write-off applies to a CAPTURED payment (open on provider clearing)")
        return CorrectionPlan("suspense", "clearing") if side == "debit" else CorrectionPlan("clearing", "suspense")
    if customer_wallet(payment) is None:
        raise CorrectionNotApplicable("manual credits and debits apply to a cash-in's or cash-out's customer wallet")
    if kind is CorrectionKind.MANUAL_CREDIT:
        return CorrectionPlan("suspense", "wallet")
    return CorrectionPlan("wallet", "suspense")


def customer_wallet(payment: Payment) -> uuid.UUID | None:
    """The customer wallet a provider payment moved: a cash-in's payee, a cash-out's payer."""
    if payment.type is PaymentType.CASH_IN:
        return payment.payee_wallet_id
    if payment.type is PaymentType.CASH_OUT:
        return payment.payer_wallet_id
    return None
