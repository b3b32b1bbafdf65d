"""Card payments under concurrency, on PostgreSQL (row locks, the ledger's unique step index):
concurrent refunds never give back more than was captured nor more than the merchant has,
concurrent duplicates of one refund move money once, concurrent captures capture once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.card_support import CardStack, card_stack


@pytest.fixture
async def stack(migrated_postgres_url: str, tmp_path: Path) -> AsyncIterator[CardStack]:
    async with card_stack(migrated_postgres_url, tmp_path) as running:
        yield running


async def test_concurrent_refunds_never_exceed_the_capture(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.captured(merchant, 10_000)  # merchant: 9 750
    responses = await asyncio.gather(*(stack.api.card_refund(merchant, payment["id"], 2_000) for _ in range(8)))
    codes = {r.status_code for r in responses}
    assert codes <= {201, 409, 422}, [r.text for r in responses]
    for response in responses:
        if response.status_code != 201:
            assert response.json()["code"] in ("card_operation_in_progress", "refund_not_allowed", "insufficient_funds")
    # Then one after the other until refused: the total stops within the capture and the balance.
    while (await stack.api.card_refund(merchant, payment["id"], 2_000)).status_code == 201:
        pass
    original = (await stack.api.card(merchant, payment["id"])).json()
    refunded = original["refunded_amount"]
    assert refunded == 8_000  # 4 x 2 000: a fifth would overdraw the merchant (9 750 - 8 000 < 2 000)
    assert (await stack.authorization(payment["authorization_id"]))["refunded_amount"] == refunded
    assert await stack.merchant_balance(merchant) == (1_750, 1_750)
    async with stack.kora.engine.connect() as conn:
        captured_refunds = await conn.scalar(
            sa.text("SELECT coalesce(sum(amount), 0) FROM payments WHERE parent_id = :p AND status = 'CAPTURED'"),
            {"p": payment["id"]},
        )
    assert captured_refunds == refunded
    assert (await stack.kora.verify_ledger()).ok


async def test_concurrent_duplicates_of_one_refund_move_money_once(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.captured(merchant, 6_000)
    key = "card-refund-dup-000001"
    responses = await asyncio.gather(
        *(stack.api.card_refund(merchant, payment["id"], 1_500, key=key) for _ in range(6))
    )
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 201:
            assert response.json()["code"] == "idempotency_request_in_progress"
    assert (await stack.authorization(payment["authorization_id"]))["refunded_amount"] == 1_500
    assert (await stack.api.card(merchant, payment["id"])).json()["refunded_amount"] == 1_500
    assert (await stack.kora.verify_ledger()).ok


async def test_concurrent_captures_capture_once(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.authorized(merchant, 5_000)
    responses = await asyncio.gather(*(stack.api.capture(merchant, payment["id"], 5_000) for _ in range(5)))
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert {r.json()["status"] for r in responses} == {"CAPTURED"}
    assert await stack.merchant_balance(merchant) == (4_875, 4_875)
    async with stack.kora.engine.connect() as conn:
        postings = await conn.scalar(
            sa.text("SELECT count(*) FROM ledger_transactions WHERE payment_id = :p AND kind = 'card.capture'"),
            {"p": payment["id"]},
        )
    assert postings == 1
    assert (await stack.kora.verify_ledger()).ok
