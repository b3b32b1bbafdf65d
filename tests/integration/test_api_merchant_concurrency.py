"""Concurrent refunds of one payment (on SQLite and PostgreSQL): exactly the ones that fit in
what is left pass, each posting once; one Idempotency-Key refunds once however often it is sent
at the same time."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import sqlalchemy as sa

from kora.ledger.adapters.tables import ledger_entries, ledger_transactions
from kora.payments.adapters.tables import payments
from tests.support.api import Api


async def refunds_posted(api: Api, payment_id: str) -> list[int]:
    """The entry count of each refund transaction posted against the payment."""
    p, t, e = payments, ledger_transactions, ledger_entries
    query = (
        sa.select(sa.func.count(e.c.id))
        .select_from(p.join(t, t.c.payment_id == p.c.id).join(e, e.c.transaction_id == t.c.id))
        .where(p.c.parent_id == uuid.UUID(payment_id), t.c.kind == "refund")
        .group_by(t.c.id)
    )
    kora: Any = api.kora  # type: ignore[attr-defined]
    async with kora.engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def test_concurrent_refunds_over_the_limit_only_the_ones_that_fit_pass(api: Api) -> None:
    merchant = await api.merchant()
    customer = await api.customer(fund=10_000)
    payment = (await api.pay_merchant(customer, merchant.merchant_id, 10_000)).json()
    assert payment["fee"] == 100  # the merchant holds 9 900: six refunds of 1 500 fit, by amount and balance

    statuses = await asyncio.gather(*(api.refund(merchant, payment["id"], 1_500) for _ in range(10)))
    codes = Counter((r.status_code, r.json().get("code")) for r in statuses)
    assert codes == Counter({(201, None): 6, (422, "refund_not_allowed"): 4}), codes

    listed = (await api.client.get("/v1/merchant/payments?limit=20", headers=merchant.headers())).json()["items"]
    original = next(i for i in listed if i["id"] == payment["id"])
    assert original["refunded_amount"] == 9_000
    assert (await api.balance(customer))["balance"] == 9_000
    assert await refunds_posted(api, payment["id"]) == [2] * 6  # each refund posted one two-leg transaction
    report = await api.kora.verify_ledger()  # type: ignore[attr-defined]
    assert report.ok, report.violations


async def test_one_key_sent_concurrently_refunds_once(api: Api) -> None:
    merchant = await api.merchant()
    customer = await api.customer(fund=5_000)
    payment = (await api.pay_merchant(customer, merchant.merchant_id, 5_000)).json()

    answers = await asyncio.gather(
        *(api.refund(merchant, payment["id"], 1_000, key="one-refund-key-1") for _ in range(8))
    )
    # Each answer is the refund itself (first or replayed), or "still in progress" (409) for a
    # duplicate that arrived while the first held the key.
    assert {r.status_code for r in answers} <= {201, 409}
    bodies = {r.json()["id"] for r in answers if r.status_code == 201}
    assert len(bodies) == 1
    assert (await api.balance(customer))["balance"] == 1_000
    assert await refunds_posted(api, payment["id"]) == [2]
