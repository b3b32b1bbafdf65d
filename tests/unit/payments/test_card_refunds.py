"""Card refunds and chargebacks on the in-memory fakes: the hold while the acquirer is asked, the
posting when it confirms, a refusal that gives the hold back, one refund pending at a time, an
unknown answer resolved from the acquirer's refunded total (never guessed), and chargebacks
applied once, flagged when they do not fit, and split to suspense when the merchant is short."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from kora.ledger import AccountKind
from kora.payments import CardOperationCommand, CardPaymentCommand, CardRefundCommand, Outcome, PaymentStatus
from kora.providers import AuthorizationState, AuthorizationStatus, CardOutcome, CardResult, Chargeback
from tests.unit.payments.card_fakes import TOKEN, CardWorld, card_world

RESOLVE = {"older_than": timedelta(seconds=60), "give_up_after": timedelta(hours=1)}


async def captured(w: CardWorld, amount: int = 10_000) -> dict[str, Any]:
    """A card payment captured in full (fee 2.5 %)."""
    auth = await w.service.authorize_card_payment(
        CardPaymentCommand(
            merchant_user_id=w.merchant,
            amount=amount,
            currency="XOF",
            card_token=TOKEN,
            idempotency_key=f"auth-{uuid.uuid4().hex}",
        )
    )
    capture = await w.service.capture_card_payment(
        CardOperationCommand(
            merchant_user_id=w.merchant,
            payment_id=uuid.UUID(auth.body["id"]),
            idempotency_key=f"cap-{uuid.uuid4().hex}",
        )
    )
    assert capture.body["status"] == "CAPTURED"
    return capture.body


def refund_cmd(w: CardWorld, payment_id: str, amount: int, key: str) -> CardRefundCommand:
    return CardRefundCommand(
        merchant_user_id=w.merchant, payment_id=uuid.UUID(payment_id), amount=amount, idempotency_key=key
    )


def chargeback(payment: dict[str, Any], amount: int, event: str = "evt_1") -> Chargeback:
    return Chargeback(event, payment["authorization_id"], uuid.UUID(payment["id"]), amount, "XOF", "fraud")


async def test_a_confirmed_refund_debits_the_merchant_and_counts_on_the_original() -> None:
    w = card_world()
    payment = await captured(w)  # merchant: 9 750
    result = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 3_000, "refund-0001"))
    refund = result.body
    assert (refund["type"], refund["status"], refund["parent_id"]) == ("refund", "CAPTURED", payment["id"])
    assert w.acquirer.calls[-1] == ("refund", ("auth_1", 3_000))
    assert w.acquirer.open_units_at_call[-1] == 0
    assert await w.merchant_balance() == (6_750, 6_750)
    assert await w.balance(AccountKind.PROVIDER_CLEARING, "card") == 7_000
    assert w.payment(payment["id"]).refunded_amount == 3_000
    assert w.payment(refund["id"]).settlement_due is not None
    beyond = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 7_001, "refund-0002"))
    assert (beyond.outcome, beyond.body["code"]) == (Outcome.FAILED, "refund_not_allowed")
    assert w.h.verify().ok


async def test_a_refused_refund_gives_the_hold_back_and_counts_nothing() -> None:
    w = card_world()
    payment = await captured(w)
    w.acquirer.script("refund", CardResult(CardOutcome.FAILED, failure_code="not_captured"))
    result = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 2_000, "refund-0003"))
    assert (result.body["status"], result.body["failure_code"]) == ("FAILED", "not_captured")
    assert await w.merchant_balance() == (9_750, 9_750)
    original = w.payment(payment["id"])
    assert (original.refunded_amount, original.pending_operation) == (0, None)
    assert w.h.audit_actions()[-2:] == ["payment.refund.authorized", "payment.refund.failed"]


async def test_an_unknown_refund_answer_is_resolved_from_the_refunded_total() -> None:
    w = card_world()
    payment = await captured(w)
    w.acquirer.script("refund", CardResult(CardOutcome.PENDING))
    pending = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 2_000, "refund-0004"))
    assert (pending.body["status"], pending.body["pending_operation"]) == ("AUTHORIZED", "refund")
    assert await w.merchant_balance() == (9_750, 7_750)  # held, not debited
    second = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 1_000, "refund-0005"))
    assert second.body["code"] == "card_operation_in_progress"

    w.later()
    w.acquirer.state = AuthorizationStatus(AuthorizationState.CAPTURED, "auth_1", captured_amount=10_000)
    assert await w.service.sweep_card_payments(**RESOLVE) == {"still_pending": 1}  # not (yet) there
    w.acquirer.state = AuthorizationStatus(
        AuthorizationState.CAPTURED, "auth_1", captured_amount=10_000, refunded_amount=2_000
    )
    assert await w.service.sweep_card_payments(**RESOLVE) == {"refunded": 1}
    assert await w.merchant_balance() == (7_750, 7_750)
    assert w.payment(payment["id"]).refunded_amount == 2_000
    replay = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 2_000, "refund-0004"))
    assert (replay.replayed, replay.body["status"]) == (True, "CAPTURED")
    assert w.h.verify().ok


async def test_a_refund_never_seen_at_the_acquirer_is_given_up_and_a_contradiction_flagged() -> None:
    w = card_world()
    payment = await captured(w)
    w.acquirer.script("refund", CardResult(CardOutcome.PENDING))
    pending = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 2_000, "refund-0006"))
    w.acquirer.state = AuthorizationStatus(AuthorizationState.CAPTURED, "auth_1", refunded_amount=500)
    w.later()
    assert await w.service.sweep_card_payments(**RESOLVE) == {"conflict": 1}  # neither 0 nor 2 000: a person looks
    w.acquirer.state = AuthorizationStatus(AuthorizationState.CAPTURED, "auth_1", refunded_amount=0)
    w.later(2 * 3600)
    assert await w.service.sweep_card_payments(**RESOLVE) == {"gave_up": 1}
    refund = w.payment(pending.body["id"])
    assert (refund.status, refund.failure_code) == (PaymentStatus.FAILED, "refund_unresolved")
    assert await w.merchant_balance() == (9_750, 9_750)
    assert w.payment(payment["id"]).pending_operation is None


async def test_a_chargeback_is_applied_once_and_one_that_does_not_fit_is_flagged() -> None:
    w = card_world()
    await captured(w)  # merchant: 9 750
    payment = await captured(w, 4_000)  # merchant: 13 650
    card = w.service.card_refunds
    assert await card.record_chargeback(chargeback(payment, 4_001), acquirer="card", correlation_id=None) == "conflict"
    assert await card.record_chargeback(chargeback(payment, 4_000), acquirer="other", correlation_id=None) == (
        "unknown_payment"
    )
    assert await card.record_chargeback(chargeback(payment, 4_000), acquirer="card", correlation_id=None) == "applied"
    # A second dispute (another event id) of a charged-back payment is flagged, never applied.
    assert await card.record_chargeback(chargeback(payment, 4_000, "evt_2"), acquirer="card", correlation_id=None) == (
        "conflict"
    )
    assert w.payment(payment["id"]).status is PaymentStatus.CHARGED_BACK
    assert await w.merchant_balance() == (9_650, 9_650)
    assert await w.balance(AccountKind.PROVIDER_CLEARING, "card") == 10_000
    assert await w.balance(AccountKind.SUSPENSE) == 0
    assert w.h.audit_actions().count("payment.card.charged_back") == 1
    assert "payment.card.chargeback_conflict" in w.h.audit_actions()
    assert w.h.verify().ok


async def test_a_chargeback_the_merchant_cannot_cover_sends_the_rest_to_suspense() -> None:
    w = card_world()
    payment = await captured(w, 8_000)  # merchant: 7 800
    await w.service.refund_card_payment(refund_cmd(w, payment["id"], 5_000, "refund-0007"))  # merchant: 2 800
    outcome = await w.service.record_chargeback(chargeback(payment, 3_000), acquirer="card", correlation_id="corr-cb")
    assert outcome == "applied"
    assert await w.merchant_balance() == (0, 0)
    assert await w.balance(AccountKind.SUSPENSE) == -200
    assert await w.balance(AccountKind.PROVIDER_CLEARING, "card") == 0
    assert ("chargeback_shortfall", ("XOF", 200)) in w.metrics.calls
    assert "payment.card.chargeback_shortfall" in w.h.audit_actions()
    assert w.h.verify().ok


async def test_a_chargeback_while_a_refund_is_out_is_flagged_and_the_refund_still_ends() -> None:
    """Applying a chargeback while a refund is pending at the acquirer could claw back more than
    the merchant kept and strand the refund: the chargeback is flagged for a person instead, and
    the refund resolves as usual."""
    w = card_world()
    payment = await captured(w)  # 10 000, merchant credited 9 750
    w.acquirer.script("refund", CardResult(CardOutcome.PENDING))
    pending = await w.service.refund_card_payment(refund_cmd(w, payment["id"], 2_000, "refund-cb-1"))
    before = await w.merchant_balance()
    outcome = await w.service.record_chargeback(chargeback(payment, 10_000), acquirer="card", correlation_id=None)
    assert outcome == "conflict"
    assert await w.merchant_balance() == before  # nothing clawed back
    assert w.payment(payment["id"]).status is not PaymentStatus.CHARGED_BACK
    w.later()
    w.acquirer.state = AuthorizationStatus(
        AuthorizationState.CAPTURED, "auth_1", captured_amount=10_000, refunded_amount=2_000
    )
    counts = await w.service.sweep_card_payments(**RESOLVE)
    assert counts.get("errors", 0) == 0, counts
    refund = w.payment(pending.body["id"])
    assert (refund.status, refund.pending_operation) == (PaymentStatus.CAPTURED, None)
    assert w.payment(payment["id"]).refunded_amount == 2_000
