"""Under real concurrency on PostgreSQL: a wallet drained by 100 simultaneous transfers never
goes below zero and each success posts exactly once; one idempotency key moves money once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import sqlalchemy as sa

from tests.support.api import Api


async def test_hundred_concurrent_transfers_drain_one_wallet_safely(postgres_api: Api) -> None:
    api = postgres_api
    payer = await api.customer(fund=5_000)
    payees = [await api.customer() for _ in range(10)]
    amount = 70  # 5_000 // 70 = 71 can succeed; 29 must be refused

    async def send(i: int) -> int:
        response = await api.transfer(payer, recipient_wallet_id=payees[i % 10].wallet_id, amount=amount)
        return response.status_code

    statuses = Counter(await asyncio.gather(*(send(i) for i in range(100))))
    assert statuses == Counter({201: 71, 422: 29}), statuses

    balance = await api.balance(payer)
    assert balance["balance"] == 5_000 - 71 * amount
    received = sum([(await api.balance(p))["balance"] for p in payees])
    assert received == 71 * amount

    kora = api.kora  # type: ignore[attr-defined]
    async with kora.engine.connect() as conn:
        per_payment = await conn.execute(
            sa.text(
                "SELECT t.payment_id, count(DISTINCT t.id), count(e.id) FROM ledger_transactions t "
                "JOIN ledger_entries e ON e.transaction_id = t.id WHERE t.kind = 'p2p' "
                "GROUP BY t.payment_id HAVING count(DISTINCT t.id) <> 1 OR count(e.id) <> 2"
            )
        )
        assert per_payment.all() == []  # every transfer posted exactly one two-entry transaction
        p2p = await conn.execute(sa.text("SELECT count(*) FROM ledger_transactions WHERE kind = 'p2p'"))
        assert p2p.scalar_one() == 71
        lowest = await conn.execute(
            sa.text(
                "SELECT min(e.balance_after) FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id "
                "WHERE a.kind = 'wallet'"
            )
        )
        assert lowest.scalar_one() >= 0
    report = await kora.verify_ledger()
    assert report.ok, report.violations


async def test_concurrent_requests_with_one_key_move_money_once(postgres_api: Api) -> None:
    api = postgres_api
    alice = await api.customer(fund=10_000)
    bob = await api.customer()
    key = "same-" + uuid.uuid4().hex

    responses = await asyncio.gather(
        *(api.transfer(alice, key=key, recipient_wallet_id=bob.wallet_id, amount=1_000) for _ in range(20))
    )
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert len({r.json()["id"] for r in created}) == 1  # every 201 is the same payment
    assert sum(1 for r in created if "Idempotent-Replayed" not in r.headers) == 1
    assert (await api.balance(alice))["balance"] == 9_000
    assert (await api.balance(bob))["balance"] == 1_000


async def test_transfers_in_both_directions_do_not_deadlock(postgres_api: Api) -> None:
    api = postgres_api
    alice = await api.customer(fund=10_000)
    bob = await api.customer(fund=10_000)

    async def ping(sender: object, recipient: object) -> int:
        response = await api.transfer(sender, recipient_wallet_id=recipient.wallet_id, amount=10)  # type: ignore[attr-defined,arg-type]
        return response.status_code

    results = await asyncio.wait_for(
        asyncio.gather(*(ping(alice, bob) if i % 2 else ping(bob, alice) for i in range(60))), timeout=60
    )
    assert set(results) == {201}
    assert (await api.balance(alice))["balance"] + (await api.balance(bob))["balance"] == 20_000
