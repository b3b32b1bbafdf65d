"""The sweeper resolves provider payments left undecided (a timeout, a lost answer): it asks the
provider for the status — never re-sends, never guesses — records the late answer exactly once,
and ends a payment still undecided after its maximum age as FAILED with its hold released."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from kora.kernel import FixedClock
from kora.ledger import AccountKind
from kora.payments import Outcome, PaymentsService, PaymentStatus, ProviderMoveCommand
from kora.providers import STATUS_UNREACHABLE, ProviderOutcome, ProviderResult
from tests.fakes import Harness, ScriptedAnswer, ScriptedGateway, failed, make_service, pending, succeeded

OLDER = timedelta(minutes=1)
GIVE_UP = timedelta(hours=1)


def cash_out(user_id: uuid.UUID, amount: int, key: str = "sweep-key-0001") -> ProviderMoveCommand:
    return ProviderMoveCommand(
        user_id=user_id, amount=amount, currency="XOF", idempotency_key=key, correlation_id="corr-sweep"
    )


async def pending_cash_out(
    answer: ScriptedAnswer | None = None,
) -> tuple[PaymentsService, Harness, ScriptedGateway, uuid.UUID]:
    gateway = ScriptedGateway(answers=[answer if answer is not None else TimeoutError()])
    clock = FixedClock()
    service, h = make_service(clock=clock, gateways=[gateway])
    alice = h.new_user()
    await h.fund(alice, 10_000)
    first = await service.cash_out(cash_out(alice, 4_000))
    assert first.body["status"] == "AUTHORIZED"  # ambiguous: kept pending, funds held
    return service, h, gateway, alice


async def test_a_late_success_is_captured_once_and_the_key_replays_it() -> None:
    service, h, gateway, alice = await pending_cash_out()
    gateway.status_answers = [succeeded(provider_ref="late-ref")]
    h.clock.advance(OLDER * 2)
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert counts["confirmed"] == 1
    assert [op for op, _ in gateway.calls] == ["disburse"]  # never re-sent
    assert [op for op, _ in gateway.status_calls] == ["disburse"]
    balance = await h.wallet_balance(alice)
    assert balance is not None
    assert (balance.posted, balance.available) == (6_000, 6_000)
    replay = await service.cash_out(cash_out(alice, 4_000))
    assert (replay.replayed, replay.body["status"]) == (True, "CAPTURED")
    again = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert again["confirmed"] == 0  # nothing left to resolve
    assert h.verify().ok
    assert ("late_confirmation", ("cash_out",)) in h.metrics.calls


async def test_a_late_failure_releases_the_hold() -> None:
    service, h, gateway, alice = await pending_cash_out()
    gateway.status_answers = [failed("NOT_ENOUGH_FUNDS")]
    h.clock.advance(OLDER * 2)
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert counts["failed"] == 1
    balance = await h.wallet_balance(alice)
    assert balance is not None
    assert (balance.posted, balance.available) == (10_000, 10_000)
    (payment,) = h.stored_payments()
    assert (payment.status, payment.failure_code) == (
        PaymentStatus.FAILED,
        "not_enough_funds",
    )  # in our shape: lower case


async def test_still_pending_is_left_alone_until_its_maximum_age_then_failed() -> None:
    service, h, _gateway, alice = await pending_cash_out(pending())
    h.clock.advance(OLDER * 2)
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert counts["still_pending"] == 1
    balance = await h.wallet_balance(alice)
    assert balance is not None
    assert balance.available == 6_000  # still held
    h.clock.advance(GIVE_UP)
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert counts["gave_up"] == 1
    (payment,) = h.stored_payments()
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "provider_unresolved")
    balance = await h.wallet_balance(alice)
    assert balance is not None
    assert balance.available == 10_000
    replay = await service.cash_out(cash_out(alice, 4_000))
    assert (replay.outcome, replay.body["status"]) == (Outcome.SUCCEEDED, "FAILED")


async def test_a_young_pending_payment_is_not_queried() -> None:
    service, _h, gateway, _ = await pending_cash_out()
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert counts == {"confirmed": 0, "failed": 0, "still_pending": 0, "gave_up": 0, "errors": 0}
    assert gateway.status_calls == []


async def test_a_late_cash_in_credits_the_wallet_through_clearing() -> None:
    gateway = ScriptedGateway(answers=[TimeoutError()])
    service, h = make_service(gateways=[gateway])
    alice = h.new_user()
    first = await service.cash_in(
        ProviderMoveCommand(user_id=alice, amount=2_500, currency="XOF", idempotency_key="cash-in-sweep-1")
    )
    assert first.body["status"] == "INITIATED"
    gateway.status_answers = [succeeded()]
    h.clock.advance(OLDER * 2)
    await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    balance = await h.wallet_balance(alice)
    assert balance is not None
    assert balance.posted == 2_500
    clearing = await h.balance_of(h.account_id(AccountKind.PROVIDER_CLEARING, "scripted"))
    assert clearing is not None
    assert clearing.posted == 2_500  # the provider owes it until its settlement
    assert h.verify().ok


async def test_it_never_gives_up_because_the_provider_could_not_be_asked() -> None:
    service, h, gateway, alice = await pending_cash_out()
    gateway.status_answers = [ProviderResult(ProviderOutcome.PENDING, failure_code=STATUS_UNREACHABLE)]
    h.clock.advance(GIVE_UP * 2)
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert (counts["gave_up"], counts["errors"]) == (0, 1)
    balance = await h.wallet_balance(alice)
    assert balance is not None
    assert balance.available == 6_000  # still held: the money may have left
    (payment,) = h.stored_payments()
    assert payment.status is PaymentStatus.AUTHORIZED


async def test_one_failing_payment_does_not_stop_the_sweep() -> None:
    service, h, gateway, _ = await pending_cash_out()
    gateway.status_answers = [RuntimeError("provider adapter bug")]
    h.clock.advance(OLDER * 2)
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP)
    assert counts["errors"] == 1


async def test_a_sweep_stops_between_payments_on_shutdown() -> None:
    service, h, gateway, _ = await pending_cash_out()
    gateway.status_answers = [succeeded()]
    h.clock.advance(OLDER * 2)
    stop = asyncio.Event()
    stop.set()
    counts = await service.sweep_pending(older_than=OLDER, give_up_after=GIVE_UP, stop=stop)
    assert sum(counts.values()) == 0
    assert gateway.status_calls == []
