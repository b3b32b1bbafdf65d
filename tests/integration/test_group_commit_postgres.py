"""Group commit on real PostgreSQL (Kora as the composition root builds it: group_commit_max=64):
hundreds of concurrent transfers share transactions and still settle to exact balances with
one posting each, the ledger and the audit chains verify, one idempotency key moves money once,
a drained payer's refusals are stored and no wallet goes below zero — also with two Kora
instances (two server processes) batching against one database."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from kora.bootstrap import Kora
from kora.ledger import Ledger, PostingOutcome, PostingRequest
from kora.payments import Outcome, PaymentResult, TransferCommand
from tests.support import api as support
from tests.support.api import Api, Customer

pytestmark = pytest.mark.postgres


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many postings each shared transaction carried (Ledger.post_many is the group path)."""
    sizes: list[int] = []
    original = Ledger.post_many

    async def spying(self: Ledger, postings: Sequence[PostingRequest]) -> list[PostingOutcome]:
        sizes.append(len(postings))
        return await original(self, postings)

    monkeypatch.setattr(Ledger, "post_many", spying)
    return sizes


def kora_of(api: Api) -> Kora:
    kora: Kora = api.kora  # type: ignore[attr-defined]
    return kora


async def customers(api: Api, count: int, *, fund: int) -> list[Customer]:
    return list(await asyncio.gather(*(api.customer(fund=fund) for _ in range(count))))


async def balances(api: Api, people: Sequence[Customer]) -> list[int]:
    return [int((await api.balance(c))["balance"]) for c in people]


async def scalar(kora: Kora, sql: str, **params: Any) -> Any:
    async with kora.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar_one()


async def assert_books_hold(kora: Kora, *, p2p: int) -> None:
    """One two-entry p2p transaction per settled payment, no wallet ever below zero, and the
    ledger and audit invariants verify."""
    async with kora.engine.connect() as conn:
        broken = await conn.execute(
            sa.text(
                "SELECT t.payment_id FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id "
                "WHERE t.kind = 'p2p' GROUP BY t.payment_id HAVING count(DISTINCT t.id) <> 1 OR count(e.id) <> 2"
            )
        )
        assert broken.all() == []
        orphans = await conn.execute(
            sa.text(
                "SELECT count(*) FROM payments p WHERE p.type = 'p2p' AND NOT EXISTS "
                "(SELECT 1 FROM ledger_transactions t WHERE t.payment_id = p.id AND t.kind = 'p2p')"
            )
        )
        assert orphans.scalar_one() == 0
    assert await scalar(kora, "SELECT count(*) FROM ledger_transactions WHERE kind = 'p2p'") == p2p
    assert await scalar(kora, "SELECT count(*) FROM payments WHERE type = 'p2p' AND status = 'SETTLED'") == p2p
    lowest = await scalar(
        kora,
        "SELECT coalesce(min(e.balance_after), 0) FROM ledger_entries e "
        "JOIN ledger_accounts a ON a.id = e.account_id WHERE a.kind = 'wallet'",
    )
    assert lowest >= 0
    ledger = await kora.verify_ledger()
    assert ledger.ok, ledger.violations
    audit = await kora.verify_audit()
    assert audit.ok, audit.as_dict()


async def test_two_hundred_concurrent_transfers_among_twenty_wallets(postgres_api: Api, batch_sizes: list[int]) -> None:
    api = postgres_api
    kora = kora_of(api)
    assert kora.settings.group_commit_max == 64
    people = await customers(api, 20, fund=10_000)
    plan: list[tuple[int, int, int]] = []
    for i in range(200):
        sender = i % 20
        recipient = (sender + 1 + (i * 7) % 19) % 20
        plan.append((sender, recipient, 5 + i))
    assert all(s != r for s, r, _ in plan)

    responses = await asyncio.wait_for(
        asyncio.gather(
            *(api.transfer(people[s], recipient_wallet_id=people[r].wallet_id, amount=a) for s, r, a in plan)
        ),
        timeout=120,
    )

    assert Counter(r.status_code for r in responses) == Counter({201: 200}), [r.text for r in responses][:3]
    assert all("Idempotent-Replayed" not in r.headers for r in responses)
    assert len({r.json()["id"] for r in responses}) == 200
    assert max(batch_sizes) > 1  # transfers did share transactions
    assert sum(batch_sizes) <= 200
    assert all(size <= 64 for size in batch_sizes)

    expected = [10_000] * 20
    for s, r, a in plan:
        expected[s] -= a
        expected[r] += a
    assert await balances(api, people) == expected
    for response, (s, r, a) in zip(responses, plan, strict=True):
        body = response.json()
        assert (body["status"], body["amount"]) == ("SETTLED", a)
        assert (body["payer_wallet_id"], body["payee_wallet_id"]) == (people[s].wallet_id, people[r].wallet_id)
    await assert_books_hold(kora, p2p=200)
    settled_records = await scalar(kora, "SELECT count(*) FROM audit_log WHERE action = 'payment.p2p.settled'")
    assert settled_records == 200


async def test_one_key_among_many_concurrent_transfers_moves_money_once(
    postgres_api: Api, batch_sizes: list[int]
) -> None:
    api = postgres_api
    kora = kora_of(api)
    alice = await api.customer(fund=100_000)
    others = await customers(api, 5, fund=1_000)
    key = "same-" + uuid.uuid4().hex

    same = [api.transfer(alice, key=key, recipient_wallet_id=others[0].wallet_id, amount=1_000) for _ in range(25)]
    rest = [
        api.transfer(others[i % 5], recipient_wallet_id=(others[(i + 1) % 5]).wallet_id, amount=10) for i in range(40)
    ]
    mixed = [coro for pair in zip(same, rest[:25], strict=True) for coro in pair] + rest[25:]
    responses = await asyncio.wait_for(asyncio.gather(*mixed), timeout=120)

    assert {r.status_code for r in responses} == {201}
    keyed = [r for r in responses if r.request.headers["Idempotency-Key"] == key]
    assert len(keyed) == 25
    assert len({r.json()["id"] for r in keyed}) == 1
    assert sum(1 for r in keyed if "Idempotent-Replayed" not in r.headers) == 1
    assert max(batch_sizes) > 1
    payment_id = keyed[0].json()["id"]
    postings = await scalar(
        kora, "SELECT count(*) FROM ledger_transactions WHERE payment_id = :id", id=uuid.UUID(payment_id)
    )
    assert postings == 1
    assert (await api.balance(alice))["balance"] == 99_000
    assert sum(await balances(api, others)) == 6_000
    await assert_books_hold(kora, p2p=1 + 40)


async def test_a_drained_payer_among_other_transfers_never_goes_negative(
    postgres_api: Api, batch_sizes: list[int]
) -> None:
    api = postgres_api
    kora = kora_of(api)
    payer = await api.customer(fund=5_000)
    payees = await customers(api, 10, fund=500)
    amount = 70  # 5_000 // 70 = 71 fit; 29 must be refused

    async def drain(i: int) -> httpx.Response:
        return await api.transfer(payer, recipient_wallet_id=payees[i % 10].wallet_id, amount=amount)

    async def chatter(i: int) -> httpx.Response:
        return await api.transfer(payees[i % 10], recipient_wallet_id=payees[(i + 3) % 10].wallet_id, amount=5)

    calls = [drain(i) if i % 3 else chatter(i) for i in range(150)]
    responses = await asyncio.wait_for(asyncio.gather(*calls), timeout=120)
    from_payer = [r for i, r in enumerate(responses) if i % 3]
    between_payees = [r for i, r in enumerate(responses) if not i % 3]

    assert len(from_payer) == 100
    assert Counter(r.status_code for r in from_payer) == Counter({201: 71, 422: 29})
    assert {r.json()["code"] for r in from_payer if r.status_code == 422} == {"insufficient_funds"}
    assert {r.status_code for r in between_payees} == {201}
    assert max(batch_sizes) > 1

    assert (await api.balance(payer))["balance"] == 5_000 - 71 * amount
    assert sum(await balances(api, payees)) == 10 * 500 + 71 * amount
    failed = await scalar(
        kora,
        "SELECT count(*) FROM idempotency_keys WHERE scope = :scope AND outcome = :outcome",
        scope=f"user:{payer.user_id}",
        outcome=Outcome.FAILED.value,
    )
    assert failed == 29
    in_flight = await scalar(
        kora, "SELECT count(*) FROM idempotency_keys WHERE outcome = :outcome", outcome=Outcome.IN_FLIGHT.value
    )
    assert in_flight == 0
    refused = await scalar(
        kora,
        "SELECT count(*) FROM audit_log WHERE action = 'payment.p2p.refused' AND subject = :subject",
        subject=f"user:{payer.user_id}",
    )
    assert refused == 29
    await assert_books_hold(kora, p2p=71 + 50)

    # Each refusal is stored against its key: the exact retry replays it, even once money is there.
    await api.cash_in(payer, 10_000)
    for i, response in enumerate(responses):
        if i % 3 and response.status_code == 422:
            again = await api.transfer(
                payer,
                key=response.request.headers["Idempotency-Key"],
                recipient_wallet_id=payees[i % 10].wallet_id,
                amount=amount,
            )
            assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (422, "true")
            assert again.json()["code"] == "insufficient_funds"
    assert (await api.balance(payer))["balance"] == 5_000 - 71 * amount + 10_000


@pytest.fixture
async def second_kora(postgres_api: Api, tmp_path: Path) -> AsyncIterator[Kora]:
    """Another Kora on the same database and secrets: a second server process."""
    kora = Kora(support.test_settings(kora_of(postgres_api).settings.database_url, tmp_path))
    yield kora
    await kora.aclose()


async def test_two_instances_batching_against_one_database_stay_exact(
    postgres_api: Api, second_kora: Kora, batch_sizes: list[int]
) -> None:
    api = postgres_api
    first_kora = kora_of(api)
    people = await customers(api, 8, fund=20_000)
    users = [uuid.UUID(c.user_id) for c in people]
    wallets = [uuid.UUID(c.wallet_id) for c in people]

    def command(i: int) -> tuple[int, int, TransferCommand]:
        sender, recipient = i % 8, (i * 3 + 1) % 8
        if recipient == sender:
            recipient = (recipient + 1) % 8
        cmd = TransferCommand(
            user_id=users[sender],
            amount=10 + i % 50,
            currency="XOF",
            idempotency_key=f"two-instances-{i:05d}",
            recipient_wallet_id=wallets[recipient],
        )
        return sender, recipient, cmd

    plan = [command(i) for i in range(240)]
    retried = list(range(3, 240, 11))  # on both instances
    # Every other transfer goes to the other instance; both directions on every pair of wallets.
    calls = [(first_kora if i % 2 else second_kora).payments.transfer(cmd) for i, (_, _, cmd) in enumerate(plan)]
    # Retries of some keys through the other instance at the same time, queued first (in the
    # reverse order), so both instances claim the same keys in opposite orders in one batch.
    retries = [(second_kora if i % 2 else first_kora).payments.transfer(plan[i][2]) for i in reversed(retried)]
    results: list[PaymentResult] = list(await asyncio.wait_for(asyncio.gather(*retries, *calls), timeout=180))
    again, firsts = results[: len(retried)][::-1], results[len(retried) :]
    assert all(r.outcome is Outcome.SUCCEEDED for r in results)
    assert max(batch_sizes) > 1
    for i, retry in zip(retried, again, strict=True):
        assert retry.body["id"] == firsts[i].body["id"]
        assert firsts[i].replayed != retry.replayed  # exactly one of the two did the work
    expected = [20_000] * 8
    for sender, recipient, cmd in plan:
        expected[sender] -= cmd.amount
        expected[recipient] += cmd.amount
    assert await balances(api, people) == expected
    await assert_books_hold(first_kora, p2p=240)
