"""P2P transfers through PaymentsService on the in-memory fakes: money moves once, the
payment settles with its full history, retries are idempotent, refusals are stored against the
key, and input errors are raised before anything is stored."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest

from kora.kernel import Money
from kora.ledger import AccountKind
from kora.payments import (
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    InvalidPaymentAmount,
    Outcome,
    PaymentsService,
    RecipientNotFound,
    TransferCommand,
    WrongCurrency,
)
from kora.payments.domain.idempotency import IdempotencyRequest, fingerprint
from tests.fakes import Harness, InMemoryIdempotencyStore, InMemoryPaymentRepository, make_service

ALICE_PHONE = "+221770000001"
BOB_PHONE = "+221770000002"
KEY = "transfer-key-0001"


@dataclasses.dataclass
class World:
    service: PaymentsService
    h: Harness
    alice: uuid.UUID
    bob: uuid.UUID

    def transfer(self, amount: int = 2500, **changes: Any) -> TransferCommand:
        values: dict[str, Any] = {
            "user_id": self.alice,
            "amount": amount,
            "currency": "XOF",
            "idempotency_key": KEY,
            "recipient_phone_number": BOB_PHONE,
            "correlation_id": "corr-1",
        }
        values.update(changes)
        return TransferCommand(**values)


@pytest.fixture
async def world() -> World:
    service, h = make_service()
    alice = h.new_user(phone=ALICE_PHONE)
    bob = h.new_user(phone=BOB_PHONE)
    await h.fund(alice, 10_000)
    return World(service, h, alice, bob)


async def balances(w: World) -> tuple[int | None, int | None]:
    alice, bob = await w.h.wallet_balance(w.alice), await w.h.wallet_balance(w.bob)
    return (alice.posted if alice else None, bob.posted if bob else None)


# ---------------------------------------------------------------- the happy path
async def test_p2p_moves_money_once_and_settles(world: World) -> None:
    w = world
    result = await w.service.transfer(w.transfer(2500))
    assert (result.outcome, result.replayed) == (Outcome.SUCCEEDED, False)
    body = result.body
    assert body["status"] == "SETTLED"
    assert [c["status"] for c in body["status_history"]] == ["INITIATED", "AUTHORIZED", "CAPTURED", "SETTLED"]
    assert (body["amount"], body["currency"], body["type"]) == (2500, "XOF", "p2p")
    assert body["payer_wallet_id"] == str(w.h.wallet_id(w.alice))
    assert body["payee_wallet_id"] == str(w.h.wallet_id(w.bob))
    assert await balances(w) == (7_500, 2_500)

    (payment,) = w.h.stored_payments()
    assert str(payment.id) == body["id"]
    assert (payment.payer_user_id, payment.payee_user_id, payment.initiated_by) == (w.alice, w.bob, w.alice)
    assert payment.correlation_id == "corr-1"
    actor = f"user:{w.alice}"
    assert [(c.status.value, c.actor) for c in payment.history] == [
        ("INITIATED", actor),
        ("AUTHORIZED", actor),
        ("CAPTURED", actor),
        ("SETTLED", "system"),
    ]
    assert all(c.reason for c in payment.history)
    assert w.h.transaction_kinds(payment.id) == ["p2p"]
    assert w.h.verify().ok

    row = w.h.idempotency_row(w.alice, KEY)
    assert row is not None
    assert (row.outcome, row.payment_id) == (Outcome.SUCCEEDED, payment.id)
    assert "payment.p2p.settled" in w.h.audit_actions()
    assert w.h.audit.verify().ok


async def test_p2p_to_a_wallet_id(world: World) -> None:
    w = world
    await w.h.fund(w.bob, 1)  # opens Bob's wallet
    bob_wallet = w.h.wallet_id(w.bob)
    result = await w.service.transfer(w.transfer(300, recipient_phone_number=None, recipient_wallet_id=bob_wallet))
    assert result.body["status"] == "SETTLED"
    assert await balances(w) == (9_700, 301)
    assert w.h.stored_payments()[0].payee_user_id == w.bob


async def test_a_recipient_without_a_wallet_gets_one(world: World) -> None:
    w = world
    assert w.h.wallet_id(w.bob) is None
    await w.service.transfer(w.transfer(1))
    assert w.h.wallet_id(w.bob) is not None


async def test_no_phone_number_reaches_the_audit_trail(world: World) -> None:
    w = world
    await w.service.transfer(w.transfer(100))
    await w.service.transfer(w.transfer(100, recipient_phone_number="+221779999999", idempotency_key="other-key-01"))
    assert w.h.audit.records
    for record in w.h.audit.records:
        text = repr(record)
        assert BOB_PHONE not in text
        assert "+221779999999" not in text


# ---------------------------------------------------------------- idempotency
async def test_the_same_request_is_replayed_without_moving_money_again(world: World) -> None:
    w = world
    first = await w.service.transfer(w.transfer(2500))
    before = w.h.contents()
    again = await w.service.transfer(w.transfer(2500, correlation_id="corr-retry"))
    assert (again.outcome, again.replayed) == (Outcome.SUCCEEDED, True)
    assert again.body == first.body
    assert w.h.contents() == before
    assert await balances(w) == (7_500, 2_500)
    assert w.h.metrics.named("idempotent_replay") == [("money",)]


async def test_the_same_key_with_another_request_is_refused(world: World) -> None:
    w = world
    await w.service.transfer(w.transfer(2500))
    before = w.h.contents()
    for changed in (
        w.transfer(2501),
        w.transfer(2500, note="rent"),
        w.transfer(2500, recipient_phone_number=ALICE_PHONE),
    ):
        with pytest.raises(IdempotencyKeyReused):
            await w.service.transfer(changed)
    assert w.h.contents() == before
    assert w.h.metrics.named("idempotency_conflict") == [("idempotency_key_reused",)] * 3


async def test_keys_are_scoped_to_the_caller(world: World) -> None:
    w = world
    await w.h.fund(w.bob, 1_000)
    await w.service.transfer(w.transfer(100))
    result = await w.service.transfer(w.transfer(100, user_id=w.bob, recipient_phone_number=ALICE_PHONE))
    assert not result.replayed
    assert await balances(w) == (10_000, 1_000)


async def test_a_request_still_in_flight_is_not_run_twice(world: World) -> None:
    w = world
    cmd = w.transfer(100)
    request = IdempotencyRequest(f"user:{w.alice}", KEY, fingerprint("transfer", cmd.fingerprint_body()))
    now = w.h.clock.now()
    await InMemoryIdempotencyStore(w.h.db.idempotency).insert(
        request,
        outcome=Outcome.IN_FLIGHT,
        body=None,
        payment_id=None,
        at=now,
        expires_at=now + timedelta(hours=1),
    )
    before = w.h.contents()
    with pytest.raises(IdempotencyRequestInProgress):
        await w.service.transfer(cmd)
    assert w.h.contents() == before


async def test_an_expired_key_runs_the_request_again(world: World) -> None:
    w = world
    refused = await w.service.transfer(w.transfer(50_000))
    assert refused.outcome is Outcome.FAILED
    w.h.clock.advance(timedelta(hours=24))
    await w.h.fund(w.alice, 40_000)
    result = await w.service.transfer(w.transfer(50_000))
    assert (result.outcome, result.replayed, result.body["status"]) == (Outcome.SUCCEEDED, False, "SETTLED")
    assert await balances(w) == (0, 50_000)


async def test_a_concurrent_duplicate_is_answered_from_the_winner(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests with one key: the loser's claim hits the unique key and it replays the
    winner's answer instead of moving money twice."""
    w = world
    original_insert = InMemoryIdempotencyStore.insert
    raced = False

    async def racing_insert(self: InMemoryIdempotencyStore, request: IdempotencyRequest, **kw: Any) -> bool:
        nonlocal raced
        if not raced and kw["outcome"] is Outcome.IN_FLIGHT:
            raced = True
            winner = await w.service.transfer(w.transfer(2500))  # commits first
            assert winner.replayed is False
            return False  # what the unique (scope, key) constraint makes of our insert
        return await original_insert(self, request, **kw)

    monkeypatch.setattr(InMemoryIdempotencyStore, "insert", racing_insert)
    result = await w.service.transfer(w.transfer(2500))
    assert (result.outcome, result.replayed, result.body["status"]) == (Outcome.SUCCEEDED, True, "SETTLED")
    assert await balances(w) == (7_500, 2_500)
    assert len(w.h.stored_payments()) == 1


async def test_a_concurrent_duplicate_that_left_nothing_asks_for_a_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world

    async def lost_claim(self: InMemoryIdempotencyStore, request: IdempotencyRequest, **kw: Any) -> bool:
        return False

    monkeypatch.setattr(InMemoryIdempotencyStore, "insert", lost_claim)
    before = w.h.contents()
    with pytest.raises(IdempotencyRequestInProgress):
        await w.service.transfer(w.transfer(2500))
    assert w.h.contents() == before


# ---------------------------------------------------------------- business refusals, stored against the key
async def test_insufficient_funds_is_a_stored_failure_and_moves_nothing(world: World) -> None:
    w = world
    ledger_before = w.h.contents()
    result = await w.service.transfer(w.transfer(10_001))
    assert (result.outcome, result.replayed) == (Outcome.FAILED, False)
    assert result.body["code"] == "insufficient_funds"
    assert set(result.body) == {"code", "detail"}
    after = w.h.contents()
    assert (after.accounts, after.entries, after.holds) == (
        ledger_before.accounts,
        ledger_before.entries,
        ledger_before.holds,
    )
    assert after.payments == {}
    row = w.h.idempotency_row(w.alice, KEY)
    assert row is not None
    assert (row.outcome, row.payment_id) == (Outcome.FAILED, None)
    assert w.h.audit_actions()[-1] == "payment.p2p.refused"
    assert w.h.metrics.named("payment_finished") == [("p2p", "REFUSED")]
    assert w.h.metrics.named("amount_moved") == []

    # The retry replays the same failure, even once the money is there.
    await w.h.fund(w.alice, 5_000)
    again = await w.service.transfer(w.transfer(10_001))
    assert (again.outcome, again.replayed, again.body) == (Outcome.FAILED, True, result.body)
    assert await balances(w) == (15_000, None)


async def test_funds_are_checked_against_the_available_balance() -> None:
    service, h = make_service()
    alice, bob = h.new_user(), h.new_user(phone=BOB_PHONE)
    await h.fund(alice, 1_000)
    async with h.uow_factory() as uow:
        wallet = await uow.ledger.open_wallet(alice, "XOF")
        await uow.ledger.place_hold(wallet.id, Money(800, "XOF"), payment_id=None)
        await uow.commit()
    cmd = TransferCommand(
        user_id=alice, amount=201, currency="XOF", idempotency_key=KEY, recipient_phone_number=BOB_PHONE
    )
    result = await service.transfer(cmd)
    assert result.body["code"] == "insufficient_funds"
    assert h.wallet_id(bob) is None


@pytest.mark.parametrize(
    ("recipient", "code"),
    [
        ({"recipient_phone_number": "+221779999999"}, "recipient_not_found"),
        ({"recipient_phone_number": ALICE_PHONE}, "same_wallet"),
    ],
)
async def test_recipient_refusals_are_stored_failures(world: World, recipient: dict[str, Any], code: str) -> None:
    # The service's documented contract: unknown recipient and same wallet are business refusals,
    # stored against the key (the HTTP layer turns the FAILED outcome into a problem).
    w = world
    before = w.h.contents()
    result = await w.service.transfer(w.transfer(100, **recipient))
    assert (result.outcome, result.body["code"]) == (Outcome.FAILED, code)
    after = w.h.contents()
    assert (after.accounts, after.entries, after.payments) == (
        before.accounts,
        before.entries,
        before.payments,
    )
    assert w.h.idempotency_row(w.alice, KEY) is not None
    again = await w.service.transfer(w.transfer(100, **recipient))
    assert (again.replayed, again.body) == (True, result.body)


async def test_a_wallet_id_that_is_not_a_customer_wallet_is_not_found(world: World) -> None:
    w = world
    own_wallet = w.h.wallet_id(w.alice)
    suspense = w.h.account_id(AccountKind.SUSPENSE, "test-funding")
    for i, target in enumerate((uuid.uuid4(), suspense)):
        result = await w.service.transfer(
            w.transfer(
                100,
                recipient_phone_number=None,
                recipient_wallet_id=target,
                idempotency_key=f"wallet-key-{i}",
            )
        )
        assert result.body["code"] == "recipient_not_found"
    result = await w.service.transfer(
        w.transfer(100, recipient_phone_number=None, recipient_wallet_id=own_wallet, idempotency_key="wallet-key-own")
    )
    assert result.body["code"] == "same_wallet"
    assert await balances(w) == (10_000, None)


# ---------------------------------------------------------------- input errors, raised before anything is stored
@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"currency": "EUR"}, WrongCurrency, "currency_mismatch"),
        ({"currency": "ZZZ"}, WrongCurrency, "currency_mismatch"),
        ({"currency": "xof"}, WrongCurrency, "currency_mismatch"),
        ({"amount": 0}, InvalidPaymentAmount, "invalid_amount"),
        ({"amount": -100}, InvalidPaymentAmount, "invalid_amount"),
        ({"amount": 10_000_001}, InvalidPaymentAmount, "invalid_amount"),
        ({"amount": 1.5}, InvalidPaymentAmount, "invalid_amount"),
        ({"amount": True}, InvalidPaymentAmount, "invalid_amount"),
        ({"idempotency_key": None}, IdempotencyKeyMissing, "idempotency_key_missing"),
        ({"idempotency_key": ""}, IdempotencyKeyMissing, "idempotency_key_missing"),
        ({"idempotency_key": "short"}, IdempotencyKeyInvalid, "idempotency_key_invalid"),
        ({"recipient_phone_number": None}, RecipientNotFound, "recipient_not_found"),
        ({"recipient_wallet_id": uuid.uuid4()}, RecipientNotFound, "recipient_not_found"),
    ],
)
async def test_input_errors_raise_before_anything_is_stored(
    world: World, changes: dict[str, Any], error: type[Exception], code: str
) -> None:
    w = world
    before = w.h.contents()
    opened = w.h.uow_factory.opened
    with pytest.raises(error) as caught:
        await w.service.transfer(w.transfer(**changes))
    assert getattr(caught.value, "code", None) == code
    assert w.h.contents() == before
    assert w.h.uow_factory.opened == opened  # not even a read


async def test_a_failure_half_way_leaves_no_trace(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The payment, postings, idempotency claim and audit record commit together or not at all."""
    w = world

    async def broken_add(self: InMemoryPaymentRepository, payment: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(InMemoryPaymentRepository, "add", broken_add)
    before = w.h.contents()
    with pytest.raises(RuntimeError, match="disk full"):
        await w.service.transfer(w.transfer(2500))
    assert w.h.contents() == before
    assert await balances(w) == (10_000, None)


# ---------------------------------------------------------------- metrics
async def test_metrics_see_the_payment_finish_and_the_money_move(world: World) -> None:
    w = world
    await w.service.transfer(w.transfer(2500))
    assert w.h.metrics.named("payment_finished") == [("p2p", "SETTLED")]
    assert w.h.metrics.named("amount_moved") == [("p2p", "XOF", 2500)]
    ((kind, seconds),) = w.h.metrics.named("ledger_posted")
    assert kind == "p2p"
    assert isinstance(seconds, float)
    assert seconds >= 0
    await w.service.transfer(w.transfer(2500))
    assert w.h.metrics.named("idempotent_replay") == [("money",)]
    assert len(w.h.metrics.named("payment_finished")) == 1
