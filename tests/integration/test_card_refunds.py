"""Refunds and chargebacks of card payments, end to end against the simulator's card acquirer,
on SQLite and PostgreSQL: partial refunds up to the captured amount and never beyond (also under
concurrency, on PostgreSQL), ambiguous refunds and captures resolved by the card job from the
acquirer's status, chargebacks notified by signed webhook (applied once, duplicates and forgeries
change nothing), and a chargeback the merchant cannot cover posted partly to suspense."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kora.ledger import AccountKind
from tests.integration.card_support import CHARGEBACK_CARD, CardStack, card_stack, chargeback_event

RESOLVE_NOW = {"older_than": timedelta(0), "give_up_after": timedelta(hours=24)}


@pytest.fixture
async def stack(migrated_url: str, tmp_path: Path) -> AsyncIterator[CardStack]:
    async with card_stack(migrated_url, tmp_path) as running:
        yield running


async def test_partial_refunds_up_to_the_captured_amount_then_settlement(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.captured(merchant, 8_000)  # fee 200: the merchant gets 7 800
    first = await stack.api.card_refund(merchant, payment["id"], 3_000)
    assert first.status_code == 201, first.text
    refund = first.json()
    assert (refund["type"], refund["status"], refund["parent_id"]) == ("refund", "CAPTURED", payment["id"])
    assert refund["settlement_due"] is not None
    second = await stack.api.card_refund(merchant, payment["id"], 4_000)
    assert second.status_code == 201, second.text
    assert await stack.merchant_balance(merchant) == (800, 800)
    beyond = await stack.api.card_refund(merchant, payment["id"], 1_001)
    assert (beyond.status_code, beyond.json()["code"]) == (422, "refund_not_allowed")
    short = await stack.api.card_refund(merchant, payment["id"], 1_000)  # the fee was not given back
    assert (short.status_code, short.json()["code"]) == (422, "insufficient_funds")
    original = (await stack.api.card(merchant, payment["id"])).json()
    assert (original["status"], original["refunded_amount"]) == ("CAPTURED", 7_000)
    assert (await stack.authorization(payment["authorization_id"]))["refunded_amount"] == 7_000
    assert await stack.balance(AccountKind.PROVIDER_CLEARING, "card") == 1_000

    ids = [uuid.UUID(p["id"]) for p in (payment, refund, second.json())]
    settled = await stack.kora.payments.settle("card", "XOF", payment_ids=ids, actor="ops", reference="card-day-1")
    totals = settled.body["totals"]
    assert (settled.body["settled"], totals["collections"]["amount"], totals["disbursements"]["amount"]) == (
        3,
        8_000,
        7_000,
    )
    assert (totals["net"], await stack.balance(AccountKind.PROVIDER_CLEARING, "card")) == (1_000, 0)
    assert await stack.balance(AccountKind.SETTLEMENT_BANK, "card") == 1_000
    assert (await stack.kora.verify_ledger()).ok
    assert await stack.metric("kora_card_operations_total", operation="refund", outcome="succeeded") == 2
    assert await stack.metric("kora_card_operations_total", operation="refund", outcome="refused") == 2


async def test_an_ambiguous_refund_and_capture_are_resolved_from_the_acquirers_status(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.captured(merchant, 10_000)  # merchant: 9 750
    await stack.sim("PATCH", "/_sim/providers/card", json={"latency": {"kind": "fixed", "min_ms": 700, "max_ms": 700}})
    key = "card-refund-ambiguous-1"
    pending = await stack.api.card_refund(merchant, payment["id"], 4_000, key=key)
    assert pending.status_code == 202, pending.text
    assert (pending.json()["status"], pending.json()["pending_operation"]) == ("AUTHORIZED", "refund")
    assert await stack.merchant_balance(merchant) == (9_750, 5_750)  # held, not yet debited
    other = await stack.api.card_refund(merchant, payment["id"], 1_000)
    assert (other.status_code, other.json()["code"]) == (409, "card_operation_in_progress")

    await stack.sim("PATCH", "/_sim/providers/card", json={"latency": {"kind": "fixed", "min_ms": 0, "max_ms": 0}})
    await wait_until(stack, lambda: stack.authorization(payment["authorization_id"]), "refunded_amount", 4_000)
    stack.clock.advance(timedelta(seconds=1))
    assert await stack.kora.payments.sweep_card_payments(**RESOLVE_NOW) == {"refunded": 1}
    assert await stack.merchant_balance(merchant) == (5_750, 5_750)
    replay = await stack.api.card_refund(merchant, payment["id"], 4_000, key=key)
    assert (replay.status_code, replay.json()["status"]) == (201, "CAPTURED")  # the key now says how it ended
    assert (await stack.api.card(merchant, payment["id"])).json()["refunded_amount"] == 4_000

    # A capture whose answer is lost is left pending (202), then found captured.
    authorized = await stack.authorized(merchant, 3_000)
    await stack.sim("PATCH", "/_sim/providers/card", json={"latency": {"kind": "fixed", "min_ms": 700, "max_ms": 700}})
    lost = await stack.api.capture(merchant, authorized["id"], 2_000)
    assert (lost.status_code, lost.json()["pending_operation"]) == (202, "capture")
    await stack.sim("PATCH", "/_sim/providers/card", json={"latency": {"kind": "fixed", "min_ms": 0, "max_ms": 0}})
    await wait_until(stack, lambda: stack.authorization(authorized["authorization_id"]), "captured_amount", 2_000)
    stack.clock.advance(timedelta(seconds=1))
    assert await stack.kora.payments.sweep_card_payments(**RESOLVE_NOW) == {"captured": 1}
    found = (await stack.api.card(merchant, authorized["id"])).json()
    assert (found["status"], found["captured_amount"], found["fee"], found["pending_operation"]) == (
        "CAPTURED",
        2_000,
        50,
        None,
    )
    assert await stack.merchant_balance(merchant) == (7_700, 7_700)
    assert (await stack.kora.verify_ledger()).ok


async def test_a_chargeback_notification_is_applied_once(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    await stack.captured(merchant, 10_000)  # merchant: 9 750
    disputed = await stack.captured(merchant, 6_000, card=CHARGEBACK_CARD)  # merchant: 15 600
    charged_back = await stack.wait_for(merchant, disputed["id"], "CHARGED_BACK")  # the simulator's webhook
    assert charged_back["status_history"][-1]["reason"] == "chargeback: fraud"
    assert await stack.merchant_balance(merchant) == (9_600, 9_600)
    assert await stack.balance(AccountKind.PROVIDER_CLEARING, "card") == 10_000
    assert await stack.balance(AccountKind.SUSPENSE) == 0

    again = chargeback_event(disputed, 6_000)  # a second dispute (another event id): flagged, not applied
    second = await stack.notify(again)
    assert (second.status_code, second.json()["status"]) == (200, "conflict")
    replayed = await stack.notify(again)  # same event id: acknowledged from its receipt
    assert replayed.json()["status"] in ("duplicate", "replayed")
    forged = await stack.notify(chargeback_event(disputed, 6_000), secret="whsec_attacker")
    assert (forged.status_code, forged.json()["code"]) == (401, "webhook_signature_invalid")
    stale = await stack.notify(chargeback_event(disputed, 6_000), at=int(stack.clock.now().timestamp()) - 3600)
    assert (stale.status_code, stale.json()["code"]) == (401, "webhook_stale")
    unknown = await stack.notify(chargeback_event({"id": str(uuid.uuid4()), "authorization_id": "auth_x"}, 10))
    assert unknown.json()["status"] == "unknown_payment"
    assert await stack.merchant_balance(merchant) == (9_600, 9_600)
    assert (await stack.kora.verify_ledger()).ok
    actions = [action for action, _ in await stack.audit(f"payment:{disputed['id']}")]
    assert actions.count("payment.card.charged_back") == 1
    assert await stack.metric("kora_card_operations_total", operation="chargeback", outcome="applied") == 1
    assert await stack.metric("kora_card_operations_total", operation="chargeback", outcome="conflict") == 1
    assert "payment.card.chargeback_conflict" in actions


async def test_a_chargeback_the_merchant_cannot_cover_goes_partly_to_suspense(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.captured(merchant, 5_000)  # fee 125: the merchant has 4 875
    too_much = await stack.notify(chargeback_event(payment, 5_001))
    assert too_much.json()["status"] == "conflict"  # more than was captured: flagged, not applied
    assert (await stack.api.card(merchant, payment["id"])).json()["status"] == "CAPTURED"

    authorization = payment["authorization_id"]
    await stack.sim("POST", f"/_sim/operations/{authorization}/chargeback", json={"amount": 5_000})
    await stack.wait_for(merchant, payment["id"], "CHARGED_BACK")
    assert await stack.merchant_balance(merchant) == (0, 0)  # never overdrawn
    assert await stack.balance(AccountKind.SUSPENSE) == -125  # a receivable from the merchant
    assert await stack.balance(AccountKind.PROVIDER_CLEARING, "card") == 0
    assert (await stack.kora.verify_ledger()).ok
    audit = dict(await stack.audit(f"payment:{payment['id']}"))
    assert audit["payment.card.chargeback_shortfall"]["shortfall"] == 125
    assert audit["payment.card.charged_back"]["merchant_covered"] == 4_875
    assert "payment.card.chargeback_conflict" in audit
    assert await stack.metric("kora_card_chargeback_shortfall_minor_total", currency="XOF") == 125


async def wait_until(stack: CardStack, read: Any, field: str, value: int) -> None:
    for _ in range(100):
        if (await read())[field] == value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{field} never became {value}")
