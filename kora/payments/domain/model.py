"""The payment lifecycle as a strict state machine. Pure Python.

INITIATED → AUTHORIZED → CAPTURED → SETTLED, plus FAILED, REVERSED and (card payments)
CHARGED_BACK. Every transition is kept with its time, actor and reason, so support can explain
any payment's state.

CAPTURED means the money moved in our books (the customer's wallet or the merchant's account);
SETTLED means the counterparty's money actually reached our settlement account (at once for
internal payments, J+1 for provider payments). See ADR 0013.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kora.kernel import Money, new_id


class PaymentError(Exception):
    """Base of the payment domain's errors; `code` is stable and documented."""

    code = "payment_error"


class IllegalTransition(PaymentError):
    code = "illegal_transition"


class InvalidFee(PaymentError):
    code = "invalid_fee"


class InvalidCapture(PaymentError):
    code = "invalid_capture"


class RefundNotAllowed(PaymentError):
    code = "refund_not_allowed"


# `failure_code` of a captured payment its provider later contradicted (e.g. reversed it): kept
# out of settlement until a person decides (ADR 0014).
PROVIDER_CONTRADICTION = "provider_contradiction"


class PaymentType(enum.StrEnum):
    P2P = "p2p"
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"
    MERCHANT = "merchant"  # customer wallet → merchant account, with a fee
    REFUND = "refund"  # merchant account → customer wallet, against an earlier payment
    CARD = "card"  # a card payment to a merchant, through a card acquirer


class PaymentStatus(enum.StrEnum):
    INITIATED = "INITIATED"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"
    CHARGED_BACK = "CHARGED_BACK"

    @property
    def is_final(self) -> bool:
        return self in (
            PaymentStatus.SETTLED,
            PaymentStatus.FAILED,
            PaymentStatus.REVERSED,
            PaymentStatus.CHARGED_BACK,
        )


ALLOWED_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.INITIATED: frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.FAILED}),
    # An authorization that is voided or expires ends FAILED: no money moved, the hold goes.
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.CAPTURED, PaymentStatus.FAILED}),
    PaymentStatus.CAPTURED: frozenset({PaymentStatus.SETTLED, PaymentStatus.REVERSED, PaymentStatus.CHARGED_BACK}),
    # A settled payment can still be undone by a compensating transaction: a provider reversal
    # or a card chargeback. (Refunds are payments of their own, pointing at this one.)
    PaymentStatus.SETTLED: frozenset({PaymentStatus.REVERSED, PaymentStatus.CHARGED_BACK}),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.REVERSED: frozenset(),
    PaymentStatus.CHARGED_BACK: frozenset(),
}


def can_transition(source: PaymentStatus, target: PaymentStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[source]


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: PaymentStatus
    at: datetime
    reason: str
    actor: str


@dataclass
class Payment:
    id: uuid.UUID
    type: PaymentType
    money: Money
    status: PaymentStatus
    created_at: datetime
    updated_at: datetime
    initiated_by: uuid.UUID
    payer_wallet_id: uuid.UUID | None = None
    payee_wallet_id: uuid.UUID | None = None
    payer_user_id: uuid.UUID | None = None
    payee_user_id: uuid.UUID | None = None
    provider: str | None = None
    provider_ref: str | None = None
    correlation_id: str | None = None
    failure_code: str | None = None
    # Fee kept by us (fee revenue) out of `money`, in the same currency: the payee gets money minus fee.
    fee: int = 0
    # A refund points at the payment it refunds; that payment counts what was refunded of it.
    parent_id: uuid.UUID | None = None
    refunded_amount: int = 0
    # A card authorization may be captured for less than it holds.
    captured_amount: int | None = None
    captured_at: datetime | None = None
    # When the provider is due to settle a captured payment (J+N); None for internal payments.
    settlement_due: datetime | None = None
    # Card payments: when the acquirer's authorization lapses, and the merchant's order reference.
    authorization_expires_at: datetime | None = None
    merchant_reference: str | None = None
    # An operation asked of the provider whose answer is not known yet ("authorize", "capture",
    # "void", "refund"): what the resolution job looks at; None when nothing is outstanding.
    pending_operation: str | None = None
    # When the provider was asked to move a cash-in/out, if not when it was made (a payment held
    # for a risk review is sent when approved): the sweeper's give-up age runs from here.
    provider_asked_at: datetime | None = None
    history: list[StatusChange] = field(default_factory=list)
    new_changes: list[StatusChange] = field(default_factory=list)

    @classmethod
    def initiate(
        cls,
        *,
        type: PaymentType,
        money: Money,
        at: datetime,
        initiated_by: uuid.UUID,
        actor: str,
        payer_wallet_id: uuid.UUID | None = None,
        payee_wallet_id: uuid.UUID | None = None,
        payer_user_id: uuid.UUID | None = None,
        payee_user_id: uuid.UUID | None = None,
        provider: str | None = None,
        correlation_id: str | None = None,
        payment_id: uuid.UUID | None = None,
        fee: int = 0,
        parent_id: uuid.UUID | None = None,
    ) -> Payment:
        if not 0 <= fee < money.amount:
            raise InvalidFee("a fee is at least 0 and less than the amount")
        payment = cls(
            id=payment_id or new_id(),
            type=type,
            money=money,
            status=PaymentStatus.INITIATED,
            created_at=at,
            updated_at=at,
            initiated_by=initiated_by,
            payer_wallet_id=payer_wallet_id,
            payee_wallet_id=payee_wallet_id,
            payer_user_id=payer_user_id,
            payee_user_id=payee_user_id,
            provider=provider,
            correlation_id=correlation_id,
            fee=fee,
            parent_id=parent_id,
        )
        change = StatusChange(PaymentStatus.INITIATED, at, "initiated", actor)
        payment.history.append(change)
        payment.new_changes.append(change)
        return payment

    def transition(self, target: PaymentStatus, *, at: datetime, reason: str, actor: str) -> None:
        """Move to `target`, or raise IllegalTransition; the change is recorded."""
        if not can_transition(self.status, target):
            raise IllegalTransition(f"{self.status} → {target} is not allowed")
        change = StatusChange(target, at, reason, actor)
        self.status = target
        self.updated_at = at
        self.history.append(change)
        self.new_changes.append(change)

    def capture(
        self, *, at: datetime, reason: str, actor: str, settlement_due: datetime | None, amount: int | None = None
    ) -> None:
        """AUTHORIZED → CAPTURED: the money moved in our books. `amount` (card) may be less than
        authorized; `settlement_due` is when the provider is expected to settle (None: internal)."""
        captured = self.money.amount if amount is None else amount
        if not 0 < captured <= self.money.amount:
            raise InvalidCapture("a capture is more than 0 and at most the authorized amount")
        self.transition(PaymentStatus.CAPTURED, at=at, reason=reason, actor=actor)
        self.captured_amount = captured
        self.captured_at = at
        self.settlement_due = settlement_due

    @property
    def refundable(self) -> int:
        """What may still be refunded: the captured amount less earlier refunds."""
        if self.status not in (PaymentStatus.CAPTURED, PaymentStatus.SETTLED):
            return 0
        return (self.captured_amount or self.money.amount) - self.refunded_amount

    def record_refund(self, amount: int) -> None:
        """Count a refund of `amount` against this payment; refunds never exceed what was captured."""
        if not 0 < amount <= self.refundable:
            raise RefundNotAllowed(f"at most {self.refundable} can still be refunded")
        self.refunded_amount += amount

    def fail(self, *, at: datetime, code: str, actor: str) -> None:
        self.transition(PaymentStatus.FAILED, at=at, reason=code, actor=actor)
        self.failure_code = code

    def is_party(self, user_id: uuid.UUID) -> bool:
        return user_id in (self.initiated_by, self.payer_user_id, self.payee_user_id)

    def service_view(self) -> dict[str, Any]:
        """The payment as another Kora service (reconciliation) sees it: no PII, no wallet ids."""
        return {
            "id": str(self.id),
            "type": self.type.value,
            "status": self.status.value,
            "amount": self.money.amount,
            "currency": self.money.currency,
            "provider": self.provider,
            "provider_ref": self.provider_ref,
        }

    def view(self) -> dict[str, Any]:
        """The payment as clients see it (JSON-ready primitives, no PII)."""
        return {
            "id": str(self.id),
            "type": self.type.value,
            "status": self.status.value,
            "amount": self.money.amount,
            "currency": self.money.currency,
            "payer_wallet_id": str(self.payer_wallet_id) if self.payer_wallet_id else None,
            "payee_wallet_id": str(self.payee_wallet_id) if self.payee_wallet_id else None,
            "provider": self.provider,
            "failure_code": self.failure_code,
            "fee": self.fee,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "refunded_amount": self.refunded_amount,
            "captured_amount": self.captured_amount,
            "settlement_due": self.settlement_due.isoformat() if self.settlement_due else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "status_history": [
                {"status": c.status.value, "at": c.at.isoformat(), "reason": c.reason} for c in self.history
            ],
        }
