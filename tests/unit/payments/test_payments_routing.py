"""Routing and fallback of provider payments, and answers that arrive by webhook.

The rule under test (ADR 0017): move to the next provider only when the one tried certainly did
not accept the request; an ambiguous outcome stays with that provider until its status is known.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from kora.payments import PaymentsService, PaymentStatus, ProviderMoveCommand
from kora.providers import ProviderOutcome, ProviderResult
from kora.providers.routing import RoutingTable
from tests.fakes import Harness, ScriptedAnswer, ScriptedGateway, failed, make_service, pending, succeeded

ROUTES = RoutingTable.from_mapping({"disburse": {"XOF": ["mtn", "wave"]}, "collect": {"*": ["mtn", "wave"]}})


def not_accepted(code: str = "provider_unavailable:breaker_open") -> ProviderResult:
    return ProviderResult(ProviderOutcome.FAILED, failure_code=code, not_accepted=True)


def command(user_id: uuid.UUID, amount: int, key: str = "route-key-0001", **extra: str) -> ProviderMoveCommand:
    return ProviderMoveCommand(user_id=user_id, amount=amount, currency="XOF", idempotency_key=key, **extra)


def two_providers(
    first: list[ScriptedAnswer], second: list[ScriptedAnswer]
) -> tuple[ScriptedGateway, ScriptedGateway, PaymentsService, Harness]:
    mtn = ScriptedGateway(answers=first, name="mtn")
    wave = ScriptedGateway(answers=second, name="wave")
    service, h = make_service(gateways=[mtn, wave], routing=ROUTES)
    return mtn, wave, service, h


async def test_a_provider_that_did_not_accept_hands_the_cash_out_to_the_next() -> None:
    mtn, wave, service, h = two_providers([not_accepted()], [succeeded(provider_ref="wave-1")])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    result = await service.cash_out(command(alice, 4_000))
    assert (result.body["status"], result.body["provider"]) == ("CAPTURED", "wave")
    (mtn_call,) = mtn.calls
    (wave_call,) = wave.calls
    assert mtn_call[1].payment_id == wave_call[1].payment_id  # one payment, one hold
    balance = await h.wallet_balance(alice)
    assert (balance.posted, balance.available) == (6_000, 6_000)
    assert "payment.cash_out.rerouted" in h.audit_actions()
    assert h.metrics.named("provider_fallback") == [("disburse", "mtn", "provider_unavailable:breaker_open")]
    assert h.verify().ok


@pytest.mark.parametrize("ambiguous", [pending(), TimeoutError("read timed out"), ConnectionResetError()])
async def test_an_ambiguous_outcome_is_never_followed_by_a_call_to_another_provider(ambiguous: ScriptedAnswer) -> None:
    mtn, wave, service, h = two_providers([ambiguous], [succeeded()])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    result = await service.cash_out(command(alice, 4_000))
    assert (result.body["status"], result.body["provider"]) == ("AUTHORIZED", "mtn")  # held, waiting on mtn
    assert wave.calls == []
    assert len(mtn.calls) == 1


async def test_a_definitive_decline_is_not_retried_elsewhere() -> None:
    _mtn, wave, service, h = two_providers([failed("payer_not_found")], [succeeded()])
    alice = h.new_user()
    result = await service.cash_in(command(alice, 1_000))
    assert (result.body["status"], result.body["failure_code"]) == ("FAILED", "payer_not_found")
    assert wave.calls == []


async def test_when_no_provider_accepts_the_payment_fails_and_the_hold_goes() -> None:
    mtn, wave, service, h = two_providers([not_accepted()], [not_accepted("provider_unavailable:bulkhead_full")])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    result = await service.cash_out(command(alice, 4_000))
    body = result.body
    assert (body["status"], body["provider"], body["failure_code"]) == (
        "FAILED",
        "wave",
        "provider_unavailable:bulkhead_full",
    )
    balance = await h.wallet_balance(alice)
    assert (balance.posted, balance.available) == (10_000, 10_000)
    assert (len(mtn.calls), len(wave.calls)) == (1, 1)


async def test_a_provider_named_by_the_client_gets_no_fallback() -> None:
    _mtn, wave, service, h = two_providers([not_accepted()], [succeeded()])
    alice = h.new_user()
    result = await service.cash_in(command(alice, 1_000, provider="mtn"))
    assert (result.body["status"], result.body["provider"]) == ("FAILED", "mtn")
    assert wave.calls == []


async def test_a_webhook_answer_captures_a_pending_payment_once() -> None:
    _mtn, _wave, service, h = two_providers([pending()], [succeeded()])
    alice = h.new_user()
    first = await service.cash_in(command(alice, 2_000))
    assert first.body["status"] == "INITIATED"
    payment_id = uuid.UUID(first.body["id"])
    answer = succeeded(provider_ref="mtn-77")
    assert await service.record_provider_answer(payment_id, answer, provider="mtn")
    before = h.contents()
    # A duplicate delivery changes nothing and is not counted again.
    assert await service.record_provider_answer(payment_id, answer, provider="mtn")
    assert h.contents() == before
    (payment,) = h.stored_payments()
    assert (payment.status, payment.provider_ref) == (PaymentStatus.CAPTURED, "mtn-77")
    assert h.metrics.named("payment_finished") == [("cash_in", "INITIATED"), ("cash_in", "CAPTURED")]
    # The client's retry with its key now replays the captured payment.
    replay = await service.cash_in(command(alice, 2_000))
    assert (replay.replayed, replay.body["status"]) == (True, "CAPTURED")


async def test_a_webhook_for_no_payment_is_ignored_and_a_pending_word_changes_nothing() -> None:
    _mtn, _wave, service, h = two_providers([pending()], [succeeded()])
    alice = h.new_user()
    first = await service.cash_in(command(alice, 2_000))
    payment_id = uuid.UUID(first.body["id"])
    before = h.contents()
    assert not await service.record_provider_answer(uuid.uuid4(), succeeded(), provider="mtn")
    # A "still pending" word teaches nothing: nothing is written.
    assert await service.record_provider_answer(payment_id, pending(), provider="mtn")
    assert h.contents() == before


async def test_an_answer_from_the_provider_a_payment_left_is_flagged_never_applied() -> None:
    """After fallback from mtn to wave, a late word from mtn (here: "succeeded", i.e. money may
    have moved twice) is never applied to the payment now waiting on wave — but never dropped
    silently either."""
    _mtn, _wave, service, h = two_providers([not_accepted()], [pending()])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    first = await service.cash_out(command(alice, 4_000))
    assert (first.body["status"], first.body["provider"]) == ("AUTHORIZED", "wave")
    payment_id = uuid.UUID(first.body["id"])
    assert await service.record_provider_answer(payment_id, succeeded(), provider="mtn")
    (payment,) = h.stored_payments()
    assert (payment.status, payment.provider) == (PaymentStatus.AUTHORIZED, "wave")
    balance = await h.wallet_balance(alice)
    assert (balance.posted, balance.available) == (10_000, 6_000)  # still held, nothing captured
    assert h.audit_actions()[-1] == "payment.cash_out.conflicting_answer"
    # wave's own answer still settles it.
    assert await service.record_provider_answer(payment_id, succeeded(), provider="wave")
    assert h.stored_payments()[0].status is PaymentStatus.CAPTURED


async def test_a_reversal_after_capture_marks_the_payment_for_a_person() -> None:
    _mtn, _wave, service, h = two_providers([succeeded()], [succeeded()])
    alice = h.new_user()
    first = await service.cash_in(command(alice, 2_000))
    assert first.body["status"] == "CAPTURED"
    await service.record_provider_answer(uuid.UUID(first.body["id"]), failed("reversed"), provider="mtn")
    (payment,) = h.stored_payments()
    assert (payment.status, payment.failure_code) == (PaymentStatus.CAPTURED, "provider_contradiction")
    assert (await h.wallet_balance(alice)).posted == 2_000  # not applied: a person decides
    assert h.audit_actions()[-1] == "payment.cash_in.conflicting_answer"


async def test_provider_codes_and_references_of_any_length_are_saved_in_shape() -> None:
    long_code = ProviderResult(ProviderOutcome.FAILED, failure_code="Payer Account Is Locked / " + "x" * 100)
    _mtn, _wave, service, h = two_providers([long_code], [succeeded()])
    alice = h.new_user()
    result = await service.cash_in(command(alice, 1_000))
    code = result.body["failure_code"]
    assert code.startswith("payer_account_is_locked_")
    assert len(code) == 64
    long_ref = ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref="r" * 300)
    _mtn2, _wave2, service2, h2 = two_providers([long_ref], [succeeded()])
    bob = h2.new_user()
    captured = await service2.cash_in(command(bob, 1_000, key="route-key-0002"))
    assert captured.body["status"] == "CAPTURED"
    assert h2.stored_payments()[0].provider_ref == "r" * 128


async def test_a_webhook_contradicting_a_definite_payment_is_flagged_not_applied() -> None:
    _mtn, _wave, service, h = two_providers([failed("approval_rejected")], [succeeded()])
    alice = h.new_user()
    first = await service.cash_in(command(alice, 2_000))
    assert first.body["status"] == "FAILED"
    assert await service.record_provider_answer(uuid.UUID(first.body["id"]), succeeded(), provider="mtn")
    (payment,) = h.stored_payments()
    assert payment.status is PaymentStatus.FAILED
    assert (await h.wallet_balance(alice)).posted == 0
    assert h.audit_actions()[-1] == "payment.cash_in.conflicting_answer"


async def test_settlement_refuses_a_payment_its_provider_contradicted() -> None:
    _mtn, _wave, service, h = two_providers([succeeded()], [succeeded()])
    alice = h.new_user()
    flagged = await service.cash_in(command(alice, 2_000))
    clean = await service.cash_in(command(alice, 3_000, key="route-key-0003"))
    await service.record_provider_answer(uuid.UUID(flagged.body["id"]), failed("reversed"), provider="mtn")
    result = await service.settle(
        "mtn",
        "XOF",
        payment_ids=[uuid.UUID(flagged.body["id"]), uuid.UUID(clean.body["id"])],
        actor="ops",
        reference="MTN-REPORT-1",
    )
    outcomes = {o["payment_id"]: (o["outcome"], o.get("reason")) for o in result.body["outcomes"]}
    assert outcomes[flagged.body["id"]] == ("rejected", "provider_contradiction")
    assert outcomes[clean.body["id"]][0] == "settled"
    assert result.body["totals"]["net"] == 3_000


async def test_a_payment_the_sweeper_cannot_resolve_goes_to_the_back_of_the_queue() -> None:
    gateway = ScriptedGateway(answers=[pending()], name="mtn")
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    stuck = await service.cash_in(command(alice, 1_000))
    h.clock.advance(timedelta(seconds=1))
    other = await service.cash_in(command(alice, 2_000, key="route-key-0004"))
    gateway.status_answers = [RuntimeError("provider exploded"), succeeded()]
    h.clock.advance(timedelta(minutes=10))
    first = await service.sweep_pending(older_than=timedelta(minutes=1), give_up_after=timedelta(days=1), limit=1)
    assert first["errors"] == 1
    h.clock.advance(timedelta(minutes=2))
    # The failing one was postponed: the next pass reaches the other payment.
    second = await service.sweep_pending(older_than=timedelta(minutes=1), give_up_after=timedelta(days=1), limit=1)
    assert second["confirmed"] == 1
    by_id = {str(p.id): p for p in h.stored_payments()}
    assert by_id[other.body["id"]].status is PaymentStatus.CAPTURED
    assert by_id[stuck.body["id"]].status is PaymentStatus.INITIATED
