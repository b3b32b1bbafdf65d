"""Card payments through the card acquirer, end to end: Kora and the provider simulator each a
real HTTP server, on SQLite and PostgreSQL. Authorize, partial capture (clearing, merchant and
fee postings), settlement J+N through the generic settlement step, decline, void, expiry found
by the card job after asking the acquirer, an ambiguous capture resolved from the acquirer's
status, and who may do what."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kora.ledger import AccountKind
from tests.integration.card_support import CHARGEBACK_CARD, DECLINED_CARD, TTL_SECONDS, CardStack, card_stack

PROBLEM = "application/problem+json"


@pytest.fixture
async def stack(migrated_url: str, tmp_path: Path) -> AsyncIterator[CardStack]:
    async with card_stack(migrated_url, tmp_path) as running:
        yield running


async def test_authorize_capture_part_then_settle(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.authorized(merchant, 10_000, reference="order-2026/0042")
    assert (payment["type"], payment["reference"], payment["pending_operation"]) == ("card", "order-2026/0042", None)
    assert payment["authorization_id"].startswith("auth_")
    assert payment["authorization_expires_at"] is not None
    # An authorization moves no money in our books: the hold is at the issuer.
    assert await stack.merchant_balance(merchant) == (0, 0)
    assert await stack.balance(AccountKind.PROVIDER_CLEARING, "card") == 0

    captured = await stack.api.capture(merchant, payment["id"], 7_000)
    assert captured.status_code == 200, captured.text
    body = captured.json()
    assert (body["status"], body["captured_amount"], body["fee"]) == ("CAPTURED", 7_000, 175)  # 2.50 %
    assert body["settlement_due"] is not None
    assert await stack.merchant_balance(merchant) == (6_825, 6_825)
    assert await stack.balance(AccountKind.PROVIDER_CLEARING, "card") == 7_000
    assert await stack.balance(AccountKind.FEE_REVENUE) == 175
    truth = await stack.authorization(payment["authorization_id"])
    assert (truth["status"], truth["captured_amount"]) == ("captured", 7_000)

    # Capture happens once: the same capture answers the payment, another is refused.
    again = await stack.api.capture(merchant, payment["id"], 7_000)
    assert (again.status_code, again.json()["status"]) == (200, "CAPTURED")
    other = await stack.api.capture(merchant, payment["id"], 1_000)
    assert (other.status_code, other.json()["code"]) == (409, "illegal_transition")
    replay = await stack.api.capture(merchant, payment["id"], 1_000, key=None)
    assert replay.status_code == 409

    settled = await stack.kora.payments.settle(
        "card", "XOF", payment_ids=[uuid.UUID(body["id"])], actor="ops", reference="card-report-2026-01-01"
    )
    assert (settled.body["settled"], settled.body["totals"]["collections"]["amount"]) == (1, 7_000)
    assert await stack.balance(AccountKind.PROVIDER_CLEARING, "card") == 0
    assert await stack.balance(AccountKind.SETTLEMENT_BANK, "card") == 7_000
    assert (await stack.api.card(merchant, payment["id"])).json()["status"] == "SETTLED"
    assert (await stack.kora.verify_ledger()).ok

    actions = [action for action, _ in await stack.audit(f"payment:{payment['id']}")]
    assert actions == [
        "payment.card.initiated",
        "payment.card.authorized",
        "payment.card.capture_requested",
        "payment.card.captured",
        "payment.card.settled",
    ]
    assert await stack.metric("kora_card_operations_total", operation="capture", outcome="succeeded") == 1
    assert await stack.metric("kora_payments_total", type="card", status="CAPTURED") == 1


async def test_a_decline_fails_the_payment_with_its_reason(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    declined = await stack.api.card_payment(merchant, 5_000, card_token=DECLINED_CARD)
    assert declined.status_code == 201, declined.text
    assert (declined.json()["status"], declined.json()["failure_code"]) == ("FAILED", "insufficient_funds")
    capture = await stack.api.capture(merchant, declined.json()["id"])
    assert (capture.status_code, capture.json()["code"]) == (409, "illegal_transition")
    assert await stack.merchant_balance(merchant) == (0, 0)
    assert await stack.metric("kora_card_operations_total", operation="authorize", outcome="declined") == 1
    # The same key and body replay the first answer; the card token is never echoed back.
    key = "card-decline-000001"
    first = await stack.api.card_payment(merchant, 5_000, card_token=DECLINED_CARD, key=key)
    second = await stack.api.card_payment(merchant, 5_000, card_token=DECLINED_CARD, key=key)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["id"] == second.json()["id"]
    assert DECLINED_CARD not in first.text


async def test_void_releases_the_authorization(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.authorized(merchant, 4_000)
    voided = await stack.api.void(merchant, payment["id"])
    assert voided.status_code == 200, voided.text
    assert (voided.json()["status"], voided.json()["failure_code"]) == ("FAILED", "voided")
    assert (await stack.authorization(payment["authorization_id"]))["status"] == "voided"
    assert (await stack.api.void(merchant, payment["id"])).json()["status"] == "FAILED"  # once is enough
    capture = await stack.api.capture(merchant, payment["id"])
    assert (capture.status_code, capture.json()["code"]) == (409, "illegal_transition")
    assert await stack.merchant_balance(merchant) == (0, 0)
    actions = [action for action, _ in await stack.audit(f"payment:{payment['id']}")]
    assert actions[-2:] == ["payment.card.void_requested", "payment.card.voided"]


async def test_an_authorization_past_its_expiry_fails_after_asking_the_acquirer(stack: CardStack) -> None:
    merchant = await stack.api.merchant()
    payment = await stack.authorized(merchant, 3_000)
    fresh = await stack.authorized(merchant, 2_000)
    # Not yet expired: the job has nothing to ask.
    assert await stack.kora.sweep_card_payments() == {}
    stack.clock.advance(timedelta(seconds=TTL_SECONDS + 1))
    # The mobile-money sweeper leaves card payments to the card job (never "unknown provider").
    assert (await stack.kora.sweep_pending())["errors"] == 0
    counts = await stack.kora.sweep_card_payments()
    assert counts == {"expired": 2}
    for one in (payment, fresh):
        view = await stack.kora.payments.card_payment(uuid.UUID(merchant.user_id), uuid.UUID(one["id"]))
        assert (view["status"], view["failure_code"]) == ("FAILED", "authorization_expired")
        assert (await stack.authorization(one["authorization_id"]))["status"] == "expired"
    assert await stack.kora.sweep_card_payments() == {}
    assert await stack.metric("kora_card_operations_total", operation="expiry", outcome="expired") == 2


async def test_only_the_merchant_who_took_it_sees_or_moves_a_card_payment(stack: CardStack) -> None:
    merchant, other = await stack.api.merchant(), await stack.api.merchant()
    customer = await stack.api.customer()
    refused = await stack.api.card_payment(customer, 1_000)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    payment = await stack.authorized(merchant, 6_000)
    for response in (
        await stack.api.card(other, payment["id"]),
        await stack.api.capture(other, payment["id"]),
        await stack.api.void(other, payment["id"]),
        await stack.api.card_refund(other, payment["id"], 100),
    ):
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
    assert (await stack.api.card(customer, payment["id"])).status_code == 403
    assert (await stack.api.card(merchant, payment["id"])).json()["status"] == "AUTHORIZED"
    bad = await stack.api.card_payment(merchant, 1_000, card_token="4111 1111 1111 1111")
    assert bad.status_code == 422
    assert "4111" not in bad.text  # validation errors never echo the input


async def test_each_step_is_traced_and_the_chargeback_continues_the_payments_trace(
    stack: CardStack, spans: InMemorySpanExporter
) -> None:
    merchant = await stack.api.merchant()
    await stack.captured(merchant, 3_000)  # some balance, so the chargeback is covered
    disputed = await stack.captured(merchant, 2_000, card=CHARGEBACK_CARD)
    await stack.wait_for(merchant, disputed["id"], "CHARGED_BACK")

    def traces(name: str) -> set[int]:
        return {span.context.trace_id for span in spans.get_finished_spans() if span.name == name}

    for _ in range(100):  # the notification's span ends just after the payment changes
        if traces("payments.card.chargeback") and traces("card.notification.receive"):
            break
        await asyncio.sleep(0.02)
    assert traces("acquirer.card.authorize") == traces("payments.card.authorize")
    assert len(traces("payments.card.authorize")) == 2
    assert traces("acquirer.card.capture") == traces("payments.card.capture")
    assert traces("payments.card.chargeback") == traces("card.notification.receive")
    # The acquirer's notification carries the trace of the request that created the authorization.
    assert traces("card.notification.receive") <= traces("payments.card.authorize")
