"""Routing and fallback of provider payments, and answers that arrive by webhook.

The rule under test (ADR 0017): move to the next provider only when the one tried certainly did
not accept the request; an ambiguous outcome stays with that provider until its status is known.
"""

from __future__ import annotations

import uuid

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


async def test_a_webhook_from_another_provider_or_for_no_payment_is_ignored() -> None:
    _mtn, _wave, service, h = two_providers([pending()], [succeeded()])
    alice = h.new_user()
    first = await service.cash_in(command(alice, 2_000))
    payment_id = uuid.UUID(first.body["id"])
    before = h.contents()
    assert not await service.record_provider_answer(payment_id, succeeded(), provider="wave")
    assert not await service.record_provider_answer(uuid.uuid4(), succeeded(), provider="mtn")
    # A "still pending" word teaches nothing: nothing is written.
    assert await service.record_provider_answer(payment_id, pending(), provider="mtn")
    assert h.contents() == before


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
