"""The payment lifecycle is a strict state machine: the allowed moves work and are recorded
with time, actor and reason; every other move is refused and changes nothing."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kora.kernel import Money
from kora.payments import (
    IllegalTransition,
    InvalidCapture,
    InvalidFee,
    Payment,
    PaymentStatus,
    PaymentType,
    RefundNotAllowed,
)

S = PaymentStatus
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Written out from the design (docs: INITIATED → AUTHORIZED → CAPTURED → SETTLED, plus FAILED,
# REVERSED and card chargebacks), independently of the module's own table.
ALLOWED: dict[PaymentStatus, set[PaymentStatus]] = {
    S.INITIATED: {S.AUTHORIZED, S.FAILED},
    S.AUTHORIZED: {S.CAPTURED, S.FAILED},
    S.CAPTURED: {S.SETTLED, S.REVERSED, S.CHARGED_BACK},
    S.SETTLED: {S.REVERSED, S.CHARGED_BACK},
    S.FAILED: set(),
    S.REVERSED: set(),
    S.CHARGED_BACK: set(),
}
ALLOWED_PAIRS = [(a, b) for a, targets in ALLOWED.items() for b in sorted(targets)]
REFUSED_PAIRS = [(a, b) for a, b in itertools.product(S, S) if b not in ALLOWED[a]]
# How to reach each status from INITIATED.
PATH_TO: dict[PaymentStatus, list[PaymentStatus]] = {
    S.INITIATED: [],
    S.AUTHORIZED: [S.AUTHORIZED],
    S.CAPTURED: [S.AUTHORIZED, S.CAPTURED],
    S.SETTLED: [S.AUTHORIZED, S.CAPTURED, S.SETTLED],
    S.FAILED: [S.FAILED],
    S.REVERSED: [S.AUTHORIZED, S.CAPTURED, S.REVERSED],
    S.CHARGED_BACK: [S.AUTHORIZED, S.CAPTURED, S.SETTLED, S.CHARGED_BACK],
}


def a_payment(*, initiated_by: uuid.UUID | None = None) -> Payment:
    return Payment.initiate(
        type=PaymentType.P2P,
        money=Money(1000, "XOF"),
        at=AT,
        initiated_by=initiated_by or uuid.uuid4(),
        actor="user:test",
        correlation_id="corr",
    )


def a_payment_in(status: PaymentStatus) -> Payment:
    payment = a_payment()
    for step in PATH_TO[status]:
        payment.transition(step, at=AT, reason="setup", actor="system")
    assert payment.status is status
    return payment


def test_a_new_payment_is_initiated_and_says_by_whom() -> None:
    user = uuid.uuid4()
    payment = a_payment(initiated_by=user)
    assert payment.status is S.INITIATED
    assert (payment.created_at, payment.updated_at, payment.initiated_by) == (AT, AT, user)
    (change,) = payment.history
    assert (change.status, change.at, change.reason, change.actor) == (
        S.INITIATED,
        AT,
        "initiated",
        "user:test",
    )
    assert payment.new_changes == payment.history
    assert payment.failure_code is None


def test_there_are_exactly_nine_allowed_moves() -> None:
    assert len(ALLOWED_PAIRS) == 9
    assert len(ALLOWED_PAIRS) + len(REFUSED_PAIRS) == len(S) ** 2


@pytest.mark.parametrize(("source", "target"), ALLOWED_PAIRS)
def test_every_allowed_transition_works_and_is_recorded(source: PaymentStatus, target: PaymentStatus) -> None:
    payment = a_payment_in(source)
    before = list(payment.history)
    later = AT + timedelta(minutes=5)
    payment.transition(target, at=later, reason="because", actor="provider:sandbox")
    assert payment.status is target
    assert payment.updated_at == later
    assert payment.history[:-1] == before
    last = payment.history[-1]
    assert (last.status, last.at, last.reason, last.actor) == (target, later, "because", "provider:sandbox")
    assert payment.new_changes[-1] == last


@pytest.mark.parametrize(("source", "target"), REFUSED_PAIRS)
def test_every_other_transition_is_refused_and_changes_nothing(source: PaymentStatus, target: PaymentStatus) -> None:
    payment = a_payment_in(source)
    history, updated_at = list(payment.history), payment.updated_at
    with pytest.raises(IllegalTransition) as caught:
        payment.transition(target, at=AT + timedelta(hours=1), reason="nope", actor="system")
    assert caught.value.code == "illegal_transition"
    assert payment.status is source
    assert payment.history == history
    assert payment.updated_at == updated_at


@settings(max_examples=300)
@given(pair=st.tuples(st.sampled_from(S), st.sampled_from(S)))
def test_a_transition_is_allowed_exactly_when_the_design_allows_it(
    pair: tuple[PaymentStatus, PaymentStatus],
) -> None:
    source, target = pair
    payment = a_payment_in(source)
    if target in ALLOWED[source]:
        payment.transition(target, at=AT, reason="r", actor="a")
        assert payment.status is target
    else:
        with pytest.raises(IllegalTransition):
            payment.transition(target, at=AT, reason="r", actor="a")
        assert payment.status is source


@settings(max_examples=300)
@given(
    attempts=st.lists(
        st.tuples(st.sampled_from(S), st.sampled_from(["user:a", "provider:x", "system"]), st.text(max_size=8)),
        max_size=20,
    )
)
def test_random_walks_record_each_accepted_change(attempts: list[tuple[PaymentStatus, str, str]]) -> None:
    payment = a_payment()
    expected = [(S.INITIATED, "user:test", "initiated")]
    at = AT
    for target, actor, reason in attempts:
        at += timedelta(seconds=1)
        source = payment.status
        if target in ALLOWED[source]:
            payment.transition(target, at=at, reason=reason, actor=actor)
            expected.append((target, actor, reason))
        else:
            with pytest.raises(IllegalTransition):
                payment.transition(target, at=at, reason=reason, actor=actor)
    assert [(c.status, c.actor, c.reason) for c in payment.history] == expected
    assert payment.status is expected[-1][0]
    # Time only moves forward along the history, and the payment's clock follows it.
    assert [c.at for c in payment.history] == sorted(c.at for c in payment.history)
    assert payment.updated_at == payment.history[-1].at
    # FAILED, REVERSED and CHARGED_BACK end the walk: nothing is ever recorded after them.
    statuses = [c.status for c in payment.history]
    for dead_end in (S.FAILED, S.REVERSED, S.CHARGED_BACK):
        assert dead_end not in statuses[:-1]


@pytest.mark.parametrize("status", list(S))
def test_final_states(status: PaymentStatus) -> None:
    assert status.is_final is (status in (S.SETTLED, S.FAILED, S.REVERSED, S.CHARGED_BACK))


@pytest.mark.parametrize("status", [S.FAILED, S.REVERSED, S.CHARGED_BACK])
def test_failed_and_reversed_are_dead_ends(status: PaymentStatus) -> None:
    payment = a_payment_in(status)
    for target in S:
        with pytest.raises(IllegalTransition):
            payment.transition(target, at=AT, reason="r", actor="a")


@pytest.mark.parametrize("source", [S.INITIATED, S.AUTHORIZED])
def test_fail_records_the_code_as_reason(source: PaymentStatus) -> None:
    payment = a_payment_in(source)
    payment.fail(at=AT, code="provider_declined", actor="provider:orange")
    assert payment.status is S.FAILED
    assert payment.failure_code == "provider_declined"
    assert (payment.history[-1].reason, payment.history[-1].actor) == ("provider_declined", "provider:orange")


@pytest.mark.parametrize("source", [S.CAPTURED, S.SETTLED, S.FAILED, S.REVERSED, S.CHARGED_BACK])
def test_fail_is_refused_once_money_moved_or_the_payment_ended(source: PaymentStatus) -> None:
    payment = a_payment_in(source)
    with pytest.raises(IllegalTransition):
        payment.fail(at=AT, code="late", actor="system")
    assert payment.failure_code is None


def test_parties() -> None:
    initiator, payer, payee, stranger = (uuid.uuid4() for _ in range(4))
    payment = Payment.initiate(
        type=PaymentType.P2P,
        money=Money(10, "XOF"),
        at=AT,
        initiated_by=initiator,
        actor="user:x",
        payer_user_id=payer,
        payee_user_id=payee,
    )
    assert all(payment.is_party(u) for u in (initiator, payer, payee))
    assert not payment.is_party(stranger)


def test_the_view_is_json_ready_and_carries_the_history() -> None:
    payment = a_payment_in(S.SETTLED)
    view = payment.view()
    assert view["status"] == "SETTLED"
    assert (view["amount"], view["currency"], view["type"]) == (1000, "XOF", "p2p")
    assert [c["status"] for c in view["status_history"]] == ["INITIATED", "AUTHORIZED", "CAPTURED", "SETTLED"]
    assert view["created_at"] == AT.isoformat()
    assert view["id"] == str(payment.id)
    # Actors (user ids) stay internal; the client sees status, time and reason.
    assert all(set(c) == {"status", "at", "reason"} for c in view["status_history"])


def test_capture_records_amount_time_and_due_date_and_refuses_more_than_authorized() -> None:
    payment = a_payment_in(S.AUTHORIZED)
    with pytest.raises(InvalidCapture):
        payment.capture(at=AT, reason="r", actor="a", settlement_due=None, amount=payment.money.amount + 1)
    with pytest.raises(InvalidCapture):
        payment.capture(at=AT, reason="r", actor="a", settlement_due=None, amount=0)
    assert payment.status is S.AUTHORIZED
    due = AT + timedelta(days=1)
    payment.capture(at=AT, reason="r", actor="a", settlement_due=due, amount=payment.money.amount - 1)
    assert (payment.status, payment.captured_amount, payment.captured_at, payment.settlement_due) == (
        S.CAPTURED,
        payment.money.amount - 1,
        AT,
        due,
    )


def test_refunds_add_up_to_at_most_what_was_captured() -> None:
    payment = a_payment_in(S.SETTLED)
    total = payment.money.amount
    payment.record_refund(total - 1)
    assert payment.refundable == 1
    with pytest.raises(RefundNotAllowed):
        payment.record_refund(2)
    payment.record_refund(1)
    assert (payment.refunded_amount, payment.refundable) == (total, 0)
    with pytest.raises(RefundNotAllowed):
        payment.record_refund(1)


@pytest.mark.parametrize("status", [S.INITIATED, S.AUTHORIZED, S.FAILED, S.REVERSED, S.CHARGED_BACK])
def test_nothing_is_refundable_before_capture_or_after_the_end(status: PaymentStatus) -> None:
    payment = a_payment_in(status)
    assert payment.refundable == 0
    with pytest.raises(RefundNotAllowed):
        payment.record_refund(1)


@pytest.mark.parametrize("fee", [-1, 10])
def test_a_fee_is_below_the_amount(fee: int) -> None:
    with pytest.raises(InvalidFee):
        Payment.initiate(
            type=PaymentType.MERCHANT, money=Money(10, "XOF"), at=AT, initiated_by=uuid.uuid4(), actor="a", fee=fee
        )
