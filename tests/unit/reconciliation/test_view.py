"""Kora's side of a reconciliation, folded from the real producer's `payment.status_changed`
payloads (what the reconciliation service receives), in any order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from kora.events.contracts import validate_payload
from kora.kernel import Money
from kora.payments.adapters.events import status_changed_events
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType
from kora.reconciliation import InternalView, internal_txn

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
DUE = T0 + timedelta(days=1)


def _events(payment: Payment) -> list[dict[str, object]]:
    """The payload the repository would record now (and clear the pending changes)."""
    [event] = status_changed_events(payment, list(payment.new_changes))
    payment.new_changes.clear()
    validate_payload(event.type, event.version, event.payload)  # what the consumer runtime checks
    return [dict(event.payload)]


def _cash_in(provider: str | None = "momo") -> Payment:
    customer = uuid.uuid4()
    return Payment.initiate(
        type=PaymentType.CASH_IN,
        money=Money(15_000, "XOF"),
        at=T0,
        initiated_by=customer,
        actor=f"user:{customer}",
        payee_user_id=customer,
        provider=provider,
    )


def test_a_captured_cash_in_is_what_the_matcher_expects() -> None:
    payment = _cash_in()
    payment.transition(PaymentStatus.AUTHORIZED, at=T0, reason="provider confirmed collection", actor="system")
    payment.provider_ref = "MOMO-0001"
    payment.capture(at=T0, reason="provider confirmed", actor="system", settlement_due=DUE)
    [payload] = _events(payment)

    txn = internal_txn(payload)
    assert txn is not None
    assert (txn.payment_id, txn.our_reference) == (str(payment.id), str(payment.id))
    assert (txn.provider, txn.provider_ref, txn.type, txn.status) == ("momo", "MOMO-0001", "cash_in", "CAPTURED")
    assert (txn.amount, txn.fee, txn.currency, txn.captured_amount) == (15_000, 0, "XOF", 15_000)
    assert (txn.captured_at, txn.settlement_due) == (T0, DUE)


def test_the_newest_change_wins_whatever_the_arrival_order() -> None:
    payment = _cash_in()
    payment.transition(PaymentStatus.AUTHORIZED, at=T0, reason="ok", actor="system")
    payment.capture(at=T0, reason="ok", actor="system", settlement_due=DUE)
    captured = _events(payment)[0]
    payment.transition(PaymentStatus.SETTLED, at=DUE, reason="settled by provider report R1", actor="ops")
    settled = _events(payment)[0]

    view = InternalView()
    assert view.apply(settled)
    assert not view.apply(captured)  # redelivered late: older, ignored
    assert not view.apply(settled)  # the same again: nothing new
    [txn] = view.for_provider("momo")
    assert txn.status == "SETTLED"
    assert view.for_provider("wave") == []


def test_internal_payments_never_reach_a_providers_report() -> None:
    payment = _cash_in(provider=None)
    payment.transition(PaymentStatus.AUTHORIZED, at=T0, reason="ok", actor="system")
    [payload] = _events(payment)
    assert internal_txn(payload) is None
    assert not InternalView().apply(payload)


def test_a_payment_the_provider_reversed_before_we_captured_it_reads_as_reversed() -> None:
    payment = _cash_in(provider="wave")
    payment.fail(at=T0, code="reversed", actor="system")
    [payload] = _events(payment)
    txn = internal_txn(payload)
    assert txn is not None
    assert txn.status == "REVERSED"
    declined = _cash_in(provider="wave")
    declined.fail(at=T0, code="insufficient_funds", actor="system")
    assert internal_txn(_events(declined)[0]).status == "FAILED"  # type: ignore[union-attr]
