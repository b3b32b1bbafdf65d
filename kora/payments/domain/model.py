"""The payment lifecycle as a strict state machine. Pure Python.

INITIATED → AUTHORIZED → CAPTURED → SETTLED, plus FAILED and REVERSED. Every transition is
kept with its time, actor and reason, so support can explain any payment's state.
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


class PaymentType(enum.StrEnum):
    P2P = "p2p"
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"


class PaymentStatus(enum.StrEnum):
    INITIATED = "INITIATED"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"

    @property
    def is_final(self) -> bool:
        return self in (PaymentStatus.SETTLED, PaymentStatus.FAILED, PaymentStatus.REVERSED)


ALLOWED_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.INITIATED: frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.FAILED}),
    # An authorization that is voided or expires ends FAILED: no money moved, the hold goes.
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.CAPTURED, PaymentStatus.FAILED}),
    PaymentStatus.CAPTURED: frozenset({PaymentStatus.SETTLED, PaymentStatus.REVERSED}),
    # A settled payment can still be reversed by a compensating transaction (refund, chargeback).
    PaymentStatus.SETTLED: frozenset({PaymentStatus.REVERSED}),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.REVERSED: frozenset(),
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
    ) -> Payment:
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

    def fail(self, *, at: datetime, code: str, actor: str) -> None:
        self.transition(PaymentStatus.FAILED, at=at, reason=code, actor=actor)
        self.failure_code = code

    def is_party(self, user_id: uuid.UUID) -> bool:
        return user_id in (self.initiated_by, self.payer_user_id, self.payee_user_id)

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
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "status_history": [
                {"status": c.status.value, "at": c.at.isoformat(), "reason": c.reason} for c in self.history
            ],
        }
