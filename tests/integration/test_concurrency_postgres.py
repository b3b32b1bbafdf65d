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
                "SELECT payment_id, count(*) FROM ledger_entries WHERE payment_id IS NOT NULL "
                "GROUP BY payment_id HAVING count(*) <> 2"
            )
        )
        assert per_payment.all() == []  # every payment posted exactly one (two-entry) transaction
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
