"""The payments module's events: one `payment.status_changed` each time a payment's status
changes are stored (one unit of work may record several steps, e.g. CAPTURED then SETTLED for a
P2P transfer: they travel as `transitions` of one event), written by the repository in the same
transaction. Ids, amounts and codes only: never a phone number or a name."""

from __future__ import annotations

from typing import Any

from kora.events import DomainEvent
from kora.payments.domain.model import Payment, StatusChange

PAYMENT_STATUS_CHANGED = "payment.status_changed"


def status_changed_events(payment: Payment, changes: list[StatusChange]) -> list[DomainEvent]:
    """The event for `changes`, the last `len(changes)` entries of the payment's history."""
    if not changes:
        return []
    first = len(payment.history) - len(changes)
    previous = payment.history[first - 1].status.value if first > 0 else None
    return [
        DomainEvent(
            type=PAYMENT_STATUS_CHANGED,
            version=1,
            aggregate_type="payment",
            aggregate_id=str(payment.id),
            payload=_payload(payment, changes, previous, sequence=len(payment.history)),
            occurred_at=changes[-1].at,
        )
    ]


def _payload(payment: Payment, changes: list[StatusChange], previous: str | None, *, sequence: int) -> dict[str, Any]:
    def opt(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "payment_id": str(payment.id),
        "payment_type": payment.type.value,
        "status": changes[-1].status.value,
        "previous_status": previous,
        "sequence": sequence,
        "transitions": [{"status": c.status.value, "at": c.at.isoformat(), "reason": c.reason[:200]} for c in changes],
        "amount": payment.money.amount,
        "currency": payment.money.currency,
        "fee": payment.fee,
        "captured_amount": payment.captured_amount,
        "provider": payment.provider,
        "provider_ref": payment.provider_ref,
        "payer_user_id": opt(payment.payer_user_id),
        "payee_user_id": opt(payment.payee_user_id),
        "payer_wallet_id": opt(payment.payer_wallet_id),
        "payee_wallet_id": opt(payment.payee_wallet_id),
        "parent_id": opt(payment.parent_id),
        "failure_code": payment.failure_code,
        "captured_at": None if payment.captured_at is None else payment.captured_at.isoformat(),
        "settlement_due": None if payment.settlement_due is None else payment.settlement_due.isoformat(),
    }
