"""Card payments on the in-memory fakes with a scripted acquirer: authorize (no posting, no
transaction open during the call), capture with the fee split in integer arithmetic, void,
refusals that change nothing, unknown answers left pending and resolved by the card job from the
acquirer's status (never guessed), and the card token kept out of reprs and logs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from loguru import logger

from kora.ledger import AccountKind
from kora.payments import (
    CardOperationCommand,
    CardOperationInProgress,
    CardPaymentCommand,
    IdempotencyKeyReused,
    InvalidCardToken,
    Outcome,
    PaymentStatus,
    UnknownProvider,
)
from kora.payments.domain.idempotency import IdempotencyRequest
from kora.providers import (
    ACQUIRER_UNAVAILABLE,
    AUTHORIZATION_EXPIRED,
    AuthorizationState,
    AuthorizationStatus,
    CardAuthorizationRequest,
    CardOutcome,
    CardResult,
)
from tests.unit.payments.card_fakes import TOKEN, CardWorld, authorized, card_world

RESOLVE = {"older_than": timedelta(seconds=60), "give_up_after": timedelta(hours=1)}


def authorize_cmd(
    w: CardWorld, amount: int = 10_000, key: str = "card-auth-0001", **changes: Any
) -> CardPaymentCommand:
    values: dict[str, Any] = {
        "merchant_user_id": w.merchant,
        "amount": amount,
        "currency": "XOF",
        "card_token": TOKEN,
        "idempotency_key": key,
        "reference": "order-1",
        "correlation_id": "corr-card",
    }
    values.update(changes)
    return CardPaymentCommand(**values)


def op(w: CardWorld, payment_id: str, key: str, amount: int | None = None) -> CardOperationCommand:
    return CardOperationCommand(
        merchant_user_id=w.merchant, payment_id=uuid.UUID(payment_id), idempotency_key=key, amount=amount
    )


async def authorize(w: CardWorld, amount: int = 10_000, key: str = "card-auth-0001") -> dict[str, Any]:
    result = await w.service.authorize_card_payment(authorize_cmd(w, amount, key))
    assert result.outcome is Outcome.SUCCEEDED
    return result.body


async def test_authorize_posts_nothing_and_calls_the_acquirer_outside_any_transaction() -> None:
    w = card_world()
    body = await authorize(w)
    assert (body["type"], body["status"], body["authorization_id"], body["reference"]) == (
        "card",
        "AUTHORIZED",
        "auth_1",
        "order-1",
    )
    assert w.h.db.ledger.all_entries() == []
    assert w.acquirer.open_units_at_call == [0]
    [(_, request)] = w.acquirer.calls
    assert isinstance(request, CardAuthorizationRequest)
    assert str(request.payment_id) == body["id"]  # our id: the reference the acquirer deduplicates on
    assert TOKEN not in repr(request)
    assert TOKEN not in repr(authorize_cmd(w))
    assert w.h.audit_actions() == ["payment.card.initiated", "payment.card.authorized"]
    assert ("authorize", "succeeded") in w.card_operations()
    replay = await w.service.authorize_card_payment(authorize_cmd(w))
    assert (replay.replayed, replay.body["id"], len(w.acquirer.calls)) == (True, body["id"], 1)
    with pytest.raises(IdempotencyKeyReused):
        await w.service.authorize_card_payment(authorize_cmd(w, amount=9_000))


async def test_a_decline_fails_the_payment_and_bad_input_stores_nothing() -> None:
    w = card_world()
    w.acquirer.script(
        "authorize", CardResult(CardOutcome.FAILED, authorization_id="auth_9", failure_code="do_not_honor")
    )
    body = await authorize(w)
    assert (body["status"], body["failure_code"]) == ("FAILED", "do_not_honor")
    before = w.h.contents()
    with pytest.raises(InvalidCardToken):
        await w.service.authorize_card_payment(authorize_cmd(w, key="card-auth-0002", card_token="not a token"))
    with pytest.raises(UnknownProvider):
        await w.service.authorize_card_payment(authorize_cmd(w, key="card-auth-0003", acquirer="other"))
    assert w.h.contents() == before


async def test_capture_in_part_posts_clearing_merchant_and_fee_in_integer_minor_units() -> None:
    w = card_world(fee_bps=175)
    body = await authorize(w)
    captured = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0001", 7_001))
    assert captured.outcome is Outcome.SUCCEEDED
    view = captured.body
    # 7 001 x 1.75 % = 122.5175 → 123 (half up, integers only)
    assert (view["status"], view["captured_amount"], view["fee"]) == ("CAPTURED", 7_001, 123)
    assert await w.balance(AccountKind.PROVIDER_CLEARING, "card") == 7_001
    assert await w.merchant_balance() == (6_878, 6_878)
    assert await w.balance(AccountKind.FEE_REVENUE) == 123
    payment = w.payment(body["id"])
    assert payment.settlement_due is not None
    assert payment.captured_at is not None
    assert payment.settlement_due > payment.captured_at
    assert w.h.verify().ok
    assert w.acquirer.calls[-1] == ("capture", ("auth_1", 7_001))
    assert ("fee_collected", ("XOF", 123)) in w.metrics.calls


async def test_capture_refusals_are_stored_and_change_nothing() -> None:
    w = card_world(fee_bps=250, fee_min=100)
    body = await authorize(w, amount=5_000)
    too_much = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0002", 5_001))
    below_fee = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0003", 100))
    elsewhere = await w.service.capture_card_payment(
        CardOperationCommand(
            merchant_user_id=uuid.uuid4(), payment_id=uuid.UUID(body["id"]), idempotency_key="k-other-1"
        )
    )
    assert [r.body["code"] for r in (too_much, below_fee, elsewhere)] == [
        "invalid_capture",
        "invalid_fee",
        "payment_not_found",
    ]
    assert w.acquirer.operations() == ["authorize"]  # never asked
    again = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0002", 5_001))
    assert (again.replayed, again.body["code"]) == (True, "invalid_capture")
    assert w.payment(body["id"]).status is PaymentStatus.AUTHORIZED


async def test_an_expired_authorization_fails_the_payment_on_capture() -> None:
    w = card_world()
    body = await authorize(w)
    w.acquirer.script("capture", CardResult(CardOutcome.FAILED, failure_code=AUTHORIZATION_EXPIRED))
    result = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0004"))
    assert (result.outcome, result.body["code"]) == (Outcome.FAILED, "authorization_expired")
    payment = w.payment(body["id"])
    assert (payment.status, payment.failure_code, payment.pending_operation) == (
        PaymentStatus.FAILED,
        "authorization_expired",
        None,
    )
    assert w.h.db.ledger.all_entries() == []


async def test_an_acquirer_that_did_not_take_the_capture_leaves_it_retryable_with_the_same_key() -> None:
    w = card_world()
    body = await authorize(w)
    w.acquirer.script(
        "capture",
        CardResult(CardOutcome.FAILED, failure_code=f"{ACQUIRER_UNAVAILABLE}:connect_error", not_accepted=True),
        CardResult(CardOutcome.SUCCEEDED),
    )
    refused = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0005"))
    assert (refused.outcome, refused.body["code"]) == (Outcome.FAILED, "acquirer_unavailable")
    assert (w.payment(body["id"]).status, w.payment(body["id"]).pending_operation) == (PaymentStatus.AUTHORIZED, None)
    retried = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0005"))
    assert (retried.replayed, retried.body["status"]) == (False, "CAPTURED")


async def test_an_unknown_capture_answer_stays_pending_until_the_acquirer_says() -> None:
    w = card_world()
    body = await authorize(w)
    w.acquirer.script("capture", CardResult(CardOutcome.PENDING))
    pending = await w.service.capture_card_payment(op(w, body["id"], "card-cap-0006", 4_000))
    assert (pending.body["status"], pending.body["pending_operation"]) == ("AUTHORIZED", "capture")
    assert w.h.db.ledger.all_entries() == []
    assert w.h.idempotency_row(w.merchant, "card-cap-0006") is None  # released: a retry is safe

    w.later()
    assert await w.service.sweep_card_payments(**RESOLVE) == {"still_pending": 1}  # still authorized there
    w.acquirer.state = AuthorizationStatus(AuthorizationState.CAPTURED, "auth_1", captured_amount=4_000)
    w.later()
    assert await w.service.sweep_card_payments(**RESOLVE) == {"captured": 1}
    payment = w.payment(body["id"])
    assert (payment.status, payment.captured_amount, payment.fee, payment.pending_operation) == (
        PaymentStatus.CAPTURED,
        4_000,
        100,
        None,
    )
    assert await w.service.sweep_card_payments(**RESOLVE) == {}
    assert w.h.verify().ok


async def test_a_capture_never_done_there_is_no_longer_pending_after_the_maximum_age() -> None:
    w = card_world()
    body = await authorize(w)
    w.acquirer.script("capture", CardResult(CardOutcome.PENDING))
    await w.service.capture_card_payment(op(w, body["id"], "card-cap-0007"))
    w.later(2 * 3600)
    assert await w.service.sweep_card_payments(**RESOLVE) == {"gave_up": 1}
    assert (w.payment(body["id"]).status, w.payment(body["id"]).pending_operation) == (PaymentStatus.AUTHORIZED, None)


async def test_void_ends_the_payment_and_a_void_of_a_captured_one_learns_the_capture() -> None:
    w = card_world()
    body = await authorize(w)
    voided = await w.service.void_card_payment(op(w, body["id"], "card-void-0001"))
    assert (voided.body["status"], voided.body["failure_code"]) == ("FAILED", "voided")
    assert "payment.card.voided" in w.h.audit_actions()

    w.acquirer.script("authorize", authorized("auth_2"))
    other = await authorize(w, key="card-auth-0009")
    w.acquirer.script("void", CardResult(CardOutcome.FAILED, failure_code="authorization_captured"))
    w.acquirer.state = AuthorizationStatus(AuthorizationState.CAPTURED, "auth_2", captured_amount=10_000)
    refused = await w.service.void_card_payment(op(w, other["id"], "card-void-0002"))
    assert (refused.outcome, refused.body["code"]) == (Outcome.FAILED, "illegal_transition")
    assert w.payment(other["id"]).status is PaymentStatus.CAPTURED  # the acquirer's truth, posted
    assert w.h.verify().ok


async def test_an_authorization_without_an_answer_is_given_up_and_a_late_one_voided() -> None:
    w = card_world()
    w.acquirer.script("authorize", CardResult(CardOutcome.PENDING))
    body = await authorize(w)
    assert (body["status"], body["pending_operation"]) == ("INITIATED", "authorize")
    assert await w.service.sweep_card_payments(**RESOLVE) == {}  # too young to give up
    w.later()
    assert await w.service.sweep_card_payments(**RESOLVE) == {"gave_up": 1}
    payment = w.payment(body["id"])
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "authorization_unresolved")
    replay = await w.service.authorize_card_payment(authorize_cmd(w))
    assert replay.body["status"] == "FAILED"  # the key's stored answer says how it ended

    # The acquirer's answer arrives after all: it is never applied, and its hold is released.
    records = w.service.cards.records
    idem = IdempotencyRequest(f"user:{w.merchant}", "card-auth-0001", "x")
    _, stray = await records.record_authorization(payment.id, authorized("auth_late"), correlation_id=None, idem=idem)
    assert stray == "auth_late"
    assert w.payment(body["id"]).status is PaymentStatus.FAILED
    assert "payment.card.conflicting_answer" in w.h.audit_actions()


async def test_expired_authorizations_end_only_once_the_acquirer_says_so() -> None:
    w = card_world()
    w.acquirer.script(
        "authorize",
        CardResult(CardOutcome.SUCCEEDED, authorization_id="auth_1", expires_at=w.h.clock.now() + timedelta(hours=1)),
    )
    body = await authorize(w)
    w.later(3600 + 1)
    assert await w.service.sweep_card_payments(**RESOLVE) == {"still_pending": 1}  # the acquirer still has it
    w.acquirer.state = AuthorizationStatus(AuthorizationState.EXPIRED, "auth_1")
    assert await w.service.sweep_card_payments(**RESOLVE) == {"expired": 1}
    assert w.payment(body["id"]).failure_code == "authorization_expired"
    assert ("expiry", "expired") in w.card_operations()


async def test_the_card_token_never_reaches_the_logs() -> None:
    w = card_world()
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message) + repr(message.record["extra"])), level="DEBUG")
    try:
        w.acquirer.script("authorize", CardResult(CardOutcome.PENDING))
        await authorize(w)
        w.later()
        await w.service.sweep_card_payments(**RESOLVE)
    finally:
        logger.remove(sink)
    assert lines
    assert not any(TOKEN in line or TOKEN[-12:] in line for line in lines)


async def test_a_void_while_a_capture_is_pending_is_refused_and_keeps_the_capture_tracked() -> None:
    w = card_world()
    body = await authorize(w)
    w.acquirer.script("capture", CardResult(CardOutcome.PENDING))
    await w.service.capture_card_payment(op(w, body["id"], "card-cap-0008", 4_000))
    with pytest.raises(CardOperationInProgress):
        await w.service.void_card_payment(op(w, body["id"], "card-void-0008"))
    assert w.payment(body["id"]).pending_operation == "capture"  # the job still follows the capture
    assert w.h.idempotency_row(w.merchant, "card-void-0008") is None  # nothing stored against the key


async def test_a_card_payment_the_job_cannot_resolve_goes_to_the_back_of_its_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = card_world()
    body = await authorize(w)
    w.acquirer.script("capture", CardResult(CardOutcome.PENDING))
    await w.service.capture_card_payment(op(w, body["id"], "card-cap-0009", 4_000))
    before = w.payment(body["id"]).updated_at

    async def broken(authorization_id: str, *, correlation_id: str | None) -> AuthorizationStatus:
        raise RuntimeError("acquirer answered nonsense")

    monkeypatch.setattr(w.acquirer, "status", broken)
    w.later()
    assert await w.service.sweep_card_payments(**RESOLVE) == {"errors": 1}
    assert w.payment(body["id"]).updated_at > before  # postponed: newer work is reached first
    assert w.payment(body["id"]).pending_operation == "capture"
