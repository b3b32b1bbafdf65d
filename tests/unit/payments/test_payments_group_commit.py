"""P2P transfers with group commit on (PaymentsConfig(group_commit_max=...)) over the in-memory
fakes: concurrent transfers share one transaction and every one of them still gets exactly the
answer it would get alone — money moved once, refusals stored against their own key, repeats
replayed, running balances that never let a wallet go below zero, and a one-by-one retry when
the shared transaction fails."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger

from kora.kernel import Money
from kora.ledger import AccountKind, Ledger
from kora.observability import correlation_scope, get_correlation_id
from kora.payments import (
    IdempotencyKeyReused,
    InvalidPaymentAmount,
    Outcome,
    PaymentResult,
    PaymentsConfig,
    PaymentsService,
    TransferCommand,
)
from kora.payments.domain.idempotency import IdempotencyRequest
from tests.fakes import (
    Harness,
    InMemoryIdempotencyStore,
    InMemoryPaymentRepository,
    StagedAudit,
    make_service,
)

PHONES = {name: f"+22177000{n:04d}" for n, name in enumerate(("alice", "bob", "carol", "dan"), start=1)}
UNKNOWN_PHONE = "+221779999999"


@dataclasses.dataclass
class World:
    service: PaymentsService
    h: Harness
    users: dict[str, uuid.UUID]

    def send(
        self,
        sender: str,
        amount: int,
        *,
        to: str | None = None,
        to_wallet: uuid.UUID | None = None,
        key: str | None = None,
        note: str | None = None,
        phone: str | None = None,
    ) -> TransferCommand:
        return TransferCommand(
            user_id=self.users[sender],
            amount=amount,
            currency="XOF",
            idempotency_key=key or f"key-{uuid.uuid4().hex}",
            recipient_phone_number=phone or (PHONES[to] if to else None),
            recipient_wallet_id=to_wallet,
            note=note,
            correlation_id=f"corr-{sender}-{amount}",
        )

    async def posted(self, name: str) -> int:
        balance = await self.h.wallet_balance(self.users[name])
        return balance.posted if balance else 0

    async def at_once(self, *cmds: TransferCommand) -> list[PaymentResult]:
        """Send every command concurrently: they reach the group commit in the same tick."""
        return list(await asyncio.wait_for(asyncio.gather(*(self.service.transfer(c) for c in cmds)), timeout=10))

    def p2p_transactions(self) -> int:
        return sum(1 for t in self.h.db.ledger.transactions.values() if t.kind == "p2p")


def build(group_commit_max: int = 64) -> World:
    service, h = make_service(config=PaymentsConfig(group_commit_max=group_commit_max))
    users = {name: h.new_user(phone=phone) for name, phone in PHONES.items()}
    return World(service, h, users)


@pytest.fixture
async def world() -> World:
    w = build()
    await w.h.fund(w.users["alice"], 10_000)
    return w


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each shared transaction: each starts with one claim_many for all its jobs."""
    sizes: list[int] = []
    original = InMemoryIdempotencyStore.claim_many

    async def spying(self: InMemoryIdempotencyStore, claims: Any, **kw: Any) -> set[tuple[str, str]]:
        sizes.append(len(claims))
        return await original(self, claims, **kw)

    monkeypatch.setattr(InMemoryIdempotencyStore, "claim_many", spying)
    return sizes


def body_code(result: PaymentResult) -> str | None:
    return result.body.get("code")


# ---------------------------------------------------------------- many transfers, one transaction
async def test_a_lone_transfer_goes_the_single_way(world: World, batches: list[int]) -> None:
    result = await world.service.transfer(world.send("alice", 100, to="bob"))
    assert result.body["status"] == "SETTLED"
    assert batches == []  # a batch of one runs in its own transaction, no claim_many


async def test_concurrent_transfers_share_transactions_and_all_settle(batches: list[int]) -> None:
    w = build(group_commit_max=64)
    names = list(PHONES)
    for name in names:
        await w.h.fund(w.users[name], 10_000)
    commits_before = w.h.db.commits
    plan = [(names[i % 4], names[(i + 1 + i // 4) % 4], 10 + i) for i in range(100)]
    plan = [(s, r, a) for s, r, a in plan if s != r]
    cmds = [w.send(s, a, to=r) for s, r, a in plan]

    results = await w.at_once(*cmds)

    assert batches == [64, len(cmds) - 64]  # max_size respected, in arrival order
    assert w.h.db.commits - commits_before == 2  # two transactions for all of them
    assert all(r.outcome is Outcome.SUCCEEDED and not r.replayed for r in results)
    assert all(r.body["status"] == "SETTLED" for r in results)
    ids = [uuid.UUID(r.body["id"]) for r in results]
    assert len(set(ids)) == len(cmds)

    expected = Counter[str]({name: 10_000 for name in names})
    for sender, recipient, amount in plan:
        expected[sender] -= amount
        expected[recipient] += amount
    assert {name: await w.posted(name) for name in names} == dict(expected)

    assert w.p2p_transactions() == len(cmds)
    for payment_id, result, (sender, recipient, amount) in zip(ids, results, plan, strict=True):
        assert w.h.transaction_kinds(payment_id) == ["p2p"]  # exactly one posting each
        stored = w.h.db.payments.payments[payment_id]
        assert stored.view() == result.body
        assert [c.status.value for c in stored.history] == ["INITIATED", "AUTHORIZED", "CAPTURED", "SETTLED"]
        assert (stored.payer_user_id, stored.payee_user_id, stored.money.amount) == (
            w.users[sender],
            w.users[recipient],
            amount,
        )
    for cmd, payment_id in zip(cmds, ids, strict=True):
        row = w.h.idempotency_row(cmd.user_id, str(cmd.idempotency_key))
        assert row is not None
        assert (row.outcome, row.payment_id) == (Outcome.SUCCEEDED, payment_id)

    assert w.h.verify().ok
    assert w.h.audit.verify().ok
    assert w.h.audit_actions().count("payment.p2p.settled") == len(cmds)
    assert w.h.metrics.named("payment_finished") == [("p2p", "SETTLED")] * len(cmds)
    assert Counter(a[2] for a in w.h.metrics.named("amount_moved")) == Counter(a for _, _, a in plan)


async def test_the_batch_answers_are_what_a_retry_replays(world: World, batches: list[int]) -> None:
    w = world
    cmds = [w.send("alice", 100 + i, to="bob") for i in range(5)]
    first = await w.at_once(*cmds)
    before = w.h.contents()
    again = await w.at_once(*cmds)
    assert batches == [5, 5]
    assert [(r.outcome, r.replayed, r.body) for r in again] == [(Outcome.SUCCEEDED, True, r.body) for r in first]
    assert w.h.contents() == before


# ---------------------------------------------------------------- refusals inside a batch
async def test_a_batch_mixing_successes_and_refusals_stores_each_refusal_against_its_own_key(
    world: World, batches: list[int]
) -> None:
    w = world
    await w.h.fund(w.users["bob"], 1)  # opens Bob's wallet
    await w.h.fund(w.users["carol"], 50)
    bob_wallet = w.h.wallet_id(w.users["bob"])
    suspense = w.h.account_id(AccountKind.SUSPENSE, "test-funding")
    cases: list[tuple[TransferCommand, str | None]] = [
        (w.send("alice", 1_000, to="bob"), None),
        (w.send("carol", 100, to="bob"), "insufficient_funds"),
        (w.send("alice", 100, to_wallet=uuid.uuid4()), "recipient_not_found"),
        (w.send("alice", 100, phone=UNKNOWN_PHONE), "recipient_not_found"),
        (w.send("alice", 100, to="alice"), "same_wallet"),
        (w.send("alice", 100, to_wallet=w.h.wallet_id(w.users["alice"])), "same_wallet"),
        (w.send("alice", 100, to_wallet=suspense), "recipient_not_found"),
        (w.send("alice", 500, to_wallet=bob_wallet), None),
    ]
    results = await w.at_once(*(cmd for cmd, _ in cases))

    assert batches == [len(cases)]
    for (cmd, code), result in zip(cases, results, strict=True):
        assert result.replayed is False
        row = w.h.idempotency_row(cmd.user_id, str(cmd.idempotency_key))
        assert row is not None
        if code is None:
            assert (result.outcome, result.body["status"]) == (Outcome.SUCCEEDED, "SETTLED")
            assert row.outcome is Outcome.SUCCEEDED
        else:
            assert (result.outcome, body_code(result)) == (Outcome.FAILED, code)
            assert set(result.body) == {"code", "detail"}
            assert row.outcome is Outcome.FAILED
            assert row.body_json is not None
    assert (await w.posted("alice"), await w.posted("bob"), await w.posted("carol")) == (8_500, 1_501, 50)
    assert len(w.h.stored_payments()) == 2
    assert w.p2p_transactions() == 2
    assert w.h.verify().ok
    assert Counter(w.h.audit_actions()) == Counter({"payment.p2p.settled": 2, "payment.p2p.refused": 6})
    assert w.h.audit.verify().ok
    assert Counter(w.h.metrics.named("payment_finished")) == Counter({("p2p", "SETTLED"): 2, ("p2p", "REFUSED"): 6})

    # Each stored answer is replayed as it was, even once Carol could pay.
    await w.h.fund(w.users["carol"], 10_000)
    before = w.h.contents()
    again = await w.at_once(*(cmd for cmd, _ in cases))
    assert [(r.replayed, r.body) for r in again] == [(True, r.body) for r in results]
    assert w.h.contents() == before


async def test_a_refusal_inside_a_batch_leaves_no_payment_and_no_posting(world: World) -> None:
    w = world
    await w.h.fund(w.users["carol"], 50)
    poor = w.send("carol", 100, to="dan")
    ok = w.send("alice", 100, to="dan")
    refused, settled = await w.at_once(poor, ok)
    assert (body_code(refused), settled.body["status"]) == ("insufficient_funds", "SETTLED")
    assert [p.id for p in w.h.stored_payments()] == [uuid.UUID(settled.body["id"])]
    carol_wallet = w.h.wallet_id(w.users["carol"])
    assert carol_wallet is not None
    assert [e.account_id for e in w.h.db.ledger.all_entries()].count(carol_wallet) == 1  # only the funding


async def test_a_refusal_inside_a_batch_stores_no_payment_id_as_the_single_path_does(world: World) -> None:
    w = world
    await w.h.fund(w.users["carol"], 50)
    alone = w.send("carol", 100, to="bob")
    assert body_code(await w.service.transfer(alone)) == "insufficient_funds"
    single_row = w.h.idempotency_row(w.users["carol"], str(alone.idempotency_key))
    assert single_row is not None
    assert single_row.payment_id is None

    poor = w.send("carol", 100, to="dan")
    refused, _ = await w.at_once(poor, w.send("alice", 100, to="dan"))
    assert body_code(refused) == "insufficient_funds"
    row = w.h.idempotency_row(w.users["carol"], str(poor.idempotency_key))
    assert row is not None
    assert row.payment_id is None  # not the id reserved by its claim: no such payment exists


# ---------------------------------------------------------------- one key, several requests
async def test_two_jobs_with_one_key_in_a_batch_move_money_once(world: World, batches: list[int]) -> None:
    w = world
    cmd = w.send("alice", 2_500, to="bob", key="same-key-0001")
    other = w.send("alice", 100, to="carol")
    first, second, third, bystander = await w.at_once(cmd, cmd, cmd, other)

    assert batches == [4]
    assert (first.outcome, first.replayed, first.body["status"]) == (Outcome.SUCCEEDED, False, "SETTLED")
    for repeat in (second, third):
        assert (repeat.outcome, repeat.replayed, repeat.body) == (Outcome.SUCCEEDED, True, first.body)
    assert bystander.body["status"] == "SETTLED"
    assert (await w.posted("alice"), await w.posted("bob"), await w.posted("carol")) == (7_400, 2_500, 100)
    assert w.h.transaction_kinds(uuid.UUID(first.body["id"])) == ["p2p"]
    assert len(w.h.stored_payments()) == 2
    assert w.h.metrics.named("idempotent_replay") == [("money",)] * 2
    assert w.h.verify().ok


async def test_a_repeated_key_replays_a_refusal_made_in_the_same_batch(world: World) -> None:
    w = world
    cmd = w.send("alice", 10_001, to="bob", key="too-much-key-1")
    first, second = await w.at_once(cmd, cmd)
    assert (first.outcome, first.replayed, body_code(first)) == (Outcome.FAILED, False, "insufficient_funds")
    assert (second.outcome, second.replayed, second.body) == (Outcome.FAILED, True, first.body)
    assert w.h.metrics.named("payment_finished") == [("p2p", "REFUSED")]


async def test_one_key_with_another_body_in_the_same_batch_is_refused(world: World) -> None:
    w = world
    cmd = w.send("alice", 2_500, to="bob", key="same-key-0002")
    changed = dataclasses.replace(cmd, amount=2_501)
    first, second = await asyncio.gather(w.service.transfer(cmd), w.service.transfer(changed), return_exceptions=True)
    assert isinstance(first, PaymentResult)
    assert first.body["status"] == "SETTLED"
    assert isinstance(second, IdempotencyKeyReused)
    assert (await w.posted("alice"), await w.posted("bob")) == (7_500, 2_500)
    assert w.h.metrics.named("idempotency_conflict") == [("idempotency_key_reused",)]


async def test_a_key_completed_earlier_is_replayed_inside_a_batch(world: World, batches: list[int]) -> None:
    w = world
    known = w.send("alice", 2_500, to="bob", key="known-key-0001")
    refused_before = w.send("alice", 20_000, to="bob", key="known-key-0002")
    earlier = await w.service.transfer(known)
    earlier_refusal = await w.service.transfer(refused_before)
    assert body_code(earlier_refusal) == "insufficient_funds"
    await w.h.fund(w.users["alice"], 20_000)  # the refused one could pass now: it must not

    new = [w.send("alice", 100 + i, to="carol") for i in range(3)]
    results = await w.at_once(new[0], known, new[1], refused_before, new[2])

    assert batches == [5]
    assert (results[1].replayed, results[1].body) == (True, earlier.body)
    assert (results[3].replayed, results[3].outcome, results[3].body) == (True, Outcome.FAILED, earlier_refusal.body)
    assert all(results[i].body["status"] == "SETTLED" and not results[i].replayed for i in (0, 2, 4))
    assert (await w.posted("alice"), await w.posted("bob"), await w.posted("carol")) == (
        30_000 - 2_500 - 303,
        2_500,
        303,
    )
    assert w.h.transaction_kinds(uuid.UUID(earlier.body["id"])) == ["p2p"]


# ---------------------------------------------------------------- the shared transaction fails
FAILURE_POINTS = [
    pytest.param(InMemoryIdempotencyStore, "claim_many", id="claim_many"),
    pytest.param(Ledger, "post_many", id="post_many"),
    pytest.param(InMemoryPaymentRepository, "add_many", id="add_many"),
    pytest.param(InMemoryIdempotencyStore, "complete_many", id="complete_many"),
    pytest.param(StagedAudit, "record_many", id="record_many"),
]


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[int]:
    calls: list[int] = []
    original: Callable[..., Any] = getattr(owner, name)

    async def failing(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("the shared transaction lost its connection")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return calls


@pytest.mark.parametrize(("owner", "name"), FAILURE_POINTS)
async def test_when_the_shared_transaction_fails_each_job_is_retried_alone_exactly_once(
    world: World, monkeypatch: pytest.MonkeyPatch, owner: type, name: str
) -> None:
    w = world
    await w.h.fund(w.users["carol"], 50)
    calls = fail_once(monkeypatch, owner, name)
    repeated = w.send("alice", 300, to="dan", key="repeated-key-01")
    cmds = [
        w.send("alice", 1_000, to="bob"),
        repeated,
        w.send("carol", 100, to="bob"),  # refused
        repeated,
        w.send("alice", 200, phone=UNKNOWN_PHONE),  # refused
        w.send("alice", 400, to="carol"),
    ]
    commits_before = w.h.db.commits
    results = await w.at_once(*cmds)

    assert calls  # the shared transaction did fail
    assert [r.outcome for r in results] == [
        Outcome.SUCCEEDED,
        Outcome.SUCCEEDED,
        Outcome.FAILED,
        Outcome.SUCCEEDED,
        Outcome.FAILED,
        Outcome.SUCCEEDED,
    ]
    assert [r.replayed for r in results] == [False, False, False, True, False, False]
    assert results[3].body == results[1].body
    assert [body_code(results[2]), body_code(results[4])] == ["insufficient_funds", "recipient_not_found"]
    # Nothing of the failed transaction stayed; each job then committed alone (the repeat replayed).
    assert w.h.db.commits - commits_before == 5
    rows = w.h.db.idempotency.rows
    assert {row.outcome for row in rows.values()} <= {Outcome.SUCCEEDED, Outcome.FAILED}
    assert len(rows) == 5
    assert (await w.posted("alice"), await w.posted("bob"), await w.posted("carol"), await w.posted("dan")) == (
        10_000 - 1_000 - 300 - 400,
        1_000,
        450,
        300,
    )
    assert w.p2p_transactions() == 3
    assert len(w.h.stored_payments()) == 3
    assert w.h.verify().ok
    assert w.h.audit.verify().ok
    assert Counter(w.h.audit_actions()) == Counter({"payment.p2p.settled": 3, "payment.p2p.refused": 2})


async def test_a_shared_transaction_that_always_fails_still_settles_everyone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Ledger, postings: Any) -> Any:
        raise RuntimeError("post_many is down")

    monkeypatch.setattr(Ledger, "post_many", broken)
    w = world
    results = await w.at_once(*(w.send("alice", 100, to=name) for name in ("bob", "carol", "dan")))
    assert [r.body["status"] for r in results] == ["SETTLED"] * 3
    assert await w.posted("alice") == 9_700
    assert w.h.verify().ok


# ---------------------------------------------------------------- running balances inside a batch
async def test_a_sender_draining_the_wallet_in_one_batch_never_goes_negative(batches: list[int]) -> None:
    w = build()
    await w.h.fund(w.users["carol"], 1_000)
    recipients = ("alice", "bob", "dan")
    cmds = [w.send("carol", 70, to=recipients[i % 3]) for i in range(30)]
    results = await w.at_once(*cmds)

    assert batches == [30]
    outcomes = [r.outcome for r in results]
    # The batch runs in arrival order on running balances: the first 14 fit in 1 000, not one more.
    assert outcomes == [Outcome.SUCCEEDED] * 14 + [Outcome.FAILED] * 16
    assert {body_code(r) for r in results[14:]} == {"insufficient_funds"}
    assert await w.posted("carol") == 1_000 - 14 * 70
    assert sum([await w.posted(name) for name in recipients]) == 14 * 70
    carol_wallet = w.h.wallet_id(w.users["carol"])
    carol_entries = [e for e in w.h.db.ledger.all_entries() if e.account_id == carol_wallet]
    assert [e.sequence for e in carol_entries] == list(range(1, 16))  # funding + 14, no gap
    assert min(e.balance_after for e in carol_entries) >= 0
    assert w.h.verify().ok
    for cmd, result in zip(cmds[14:], results[14:], strict=True):
        row = w.h.idempotency_row(cmd.user_id, str(cmd.idempotency_key))
        assert row is not None
        assert (row.outcome, row.body_json is not None) == (Outcome.FAILED, True)
        again = await w.service.transfer(cmd)
        assert (again.replayed, again.body) == (True, result.body)


async def test_money_received_earlier_in_a_batch_can_be_spent_later_in_it(batches: list[int]) -> None:
    w = build()
    await w.h.fund(w.users["alice"], 500)
    results = await w.at_once(
        w.send("alice", 500, to="bob"),
        w.send("bob", 300, to="carol"),
        w.send("bob", 300, to="carol"),  # only 200 left by then
        w.send("carol", 300, to="dan"),
    )
    assert batches == [4]
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SUCCEEDED]
    assert body_code(results[2]) == "insufficient_funds"
    assert [await w.posted(n) for n in ("alice", "bob", "carol", "dan")] == [0, 200, 0, 300]
    assert w.h.verify().ok


async def test_held_funds_stay_out_of_reach_inside_a_batch(world: World) -> None:
    w = world
    async with w.h.uow_factory() as uow:
        wallet = await uow.ledger.open_wallet(w.users["alice"], "XOF")
        await uow.ledger.place_hold(wallet.id, Money(9_800, "XOF"), payment_id=None)
        await uow.commit()
    first, second = await w.at_once(w.send("alice", 150, to="bob"), w.send("alice", 150, to="carol"))
    assert first.body["status"] == "SETTLED"
    assert body_code(second) == "insufficient_funds"  # 50 available after the first
    balance = await w.h.wallet_balance(w.users["alice"])
    assert balance is not None
    assert (balance.posted, balance.available) == (9_850, 50)


async def test_an_input_error_in_a_burst_is_raised_to_its_caller_only(world: World) -> None:
    w = world
    outcomes = await asyncio.gather(
        w.service.transfer(w.send("alice", 100, to="bob")),
        w.service.transfer(w.send("alice", 0, to="bob")),
        w.service.transfer(w.send("alice", 200, to="carol")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], InvalidPaymentAmount)
    settled = [o for i, o in enumerate(outcomes) if i != 1]
    assert all(isinstance(o, PaymentResult) and o.body["status"] == "SETTLED" for o in settled)
    assert await w.posted("alice") == 9_700


# ---------------------------------------------------------------- what operators see
async def test_ledger_posted_is_counted_once_per_journal_transaction(world: World) -> None:
    w = world
    await w.h.fund(w.users["carol"], 10)
    results = await w.at_once(
        w.send("alice", 100, to="bob"),
        w.send("alice", 100, to="carol"),
        w.send("carol", 200, to="dan"),  # 110 by then: refused
        w.send("alice", 100, to="dan"),
    )
    assert [r.outcome for r in results].count(Outcome.FAILED) == 1
    assert len(w.h.metrics.named("ledger_posted")) == 3  # as three single transfers would
    results = await w.at_once(w.send("carol", 500, to="dan"), w.send("carol", 500, to="bob"))
    assert {body_code(r) for r in results} == {"insufficient_funds"}
    assert len(w.h.metrics.named("ledger_posted")) == 3  # a batch that posted nothing counts nothing


@pytest.fixture
def log_lines() -> Iterator[list[tuple[str, str | None, str | None]]]:
    """(message, payment_id, correlation id in force when logged) of every INFO line."""
    lines: list[tuple[str, str | None, str | None]] = []
    sink = logger.add(
        lambda m: lines.append((m.record["message"], m.record["extra"].get("payment_id"), get_correlation_id())),
        level="INFO",
    )
    yield lines
    logger.remove(sink)


async def send_as(w: World, cmd: TransferCommand) -> PaymentResult:
    with correlation_scope(cmd.correlation_id):
        return await w.service.transfer(cmd)


def settled_lines(lines: list[tuple[str, str | None, str | None]]) -> dict[str | None, str | None]:
    return {payment_id: corr for message, payment_id, corr in lines if message == "payment SETTLED"}


async def test_grouped_transfers_log_under_their_own_correlation_id(
    world: World, log_lines: list[tuple[str, str | None, str | None]]
) -> None:
    w = world
    cmds = [
        dataclasses.replace(w.send("alice", 100 + i, to="bob"), correlation_id=f"corr-grouped-{i}") for i in range(3)
    ]
    results = await asyncio.gather(*(send_as(w, c) for c in cmds))
    assert settled_lines(log_lines) == {r.body["id"]: c.correlation_id for r, c in zip(results, cmds, strict=True)}


async def test_a_transfer_run_alone_by_the_worker_logs_under_its_own_correlation_id(
    world: World, monkeypatch: pytest.MonkeyPatch, log_lines: list[tuple[str, str | None, str | None]]
) -> None:
    w = world
    gate, entered = asyncio.Event(), asyncio.Event()
    original_add = InMemoryPaymentRepository.add

    async def gated_add(self: InMemoryPaymentRepository, payment: Any) -> None:
        if not gate.is_set():
            entered.set()
            await gate.wait()
        await original_add(self, payment)

    monkeypatch.setattr(InMemoryPaymentRepository, "add", gated_add)
    a = dataclasses.replace(w.send("alice", 100, to="bob"), correlation_id="corr-request-a")
    b = dataclasses.replace(w.send("alice", 200, to="bob"), correlation_id="corr-request-b")
    first = asyncio.create_task(send_as(w, a))  # starts the worker, in A's context
    await asyncio.wait_for(entered.wait(), timeout=1)
    second = asyncio.create_task(send_as(w, b))  # arrives while A's transaction is open
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    result_a, result_b = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)

    lines = settled_lines(log_lines)
    assert lines[result_a.body["id"]] == "corr-request-a"
    assert lines[result_b.body["id"]] == "corr-request-b"  # not the id of the request that started the worker


def test_group_commit_is_off_unless_configured() -> None:
    assert PaymentsConfig().group_commit_max == 0


async def test_the_claims_of_one_batch_are_made_in_one_call(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[IdempotencyRequest]] = []
    original = InMemoryIdempotencyStore.claim_many

    async def spying(self: InMemoryIdempotencyStore, claims: Any, **kw: Any) -> set[tuple[str, str]]:
        seen.append([request for request, _ in claims])
        return await original(self, claims, **kw)

    monkeypatch.setattr(InMemoryIdempotencyStore, "claim_many", spying)
    w = world
    cmds = [w.send("alice", 10, to="bob") for _ in range(4)]
    await w.at_once(*cmds)
    assert [[r.key for r in call] for call in seen] == [[c.idempotency_key for c in cmds]]
