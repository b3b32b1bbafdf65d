"""Signed Wave webhooks end to end: the simulator and Kora each serve real HTTP, the simulator's
signed webhook reaches Kora's endpoint and moves a pending cash-in to its definite state;
forged and stale deliveries are refused and change nothing; duplicates and replays are
acknowledged and change nothing; a reversal after success is flagged, not applied; the trace
of the cash-in continues through the webhook. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.platform.db import create_engine
from kora.providers.webhooks import signature_header
from kora.simulator import SimulatorConfig, create_simulator_app
from tests.integration.simulator.conftest import RunningServer, serve
from tests.support.api import Api, Customer
from tests.support.api import test_settings as settings_for

SECRET = "whsec_test_only_e2e"  # a test value, shared with the simulator below


@dataclass
class Stack:
    kora: RunningServer
    simulator: RunningServer
    database_url: str
    api: Api

    async def customer(self, code: str) -> Customer:
        """A customer whose mobile-money number asks the simulator for behaviour ``code``."""
        phone = f"+22507{uuid.uuid4().int % 100:02d}0000{code}"
        password = "wave-hook-" + uuid.uuid4().hex[:10]
        registered = await self.api.client.post("/v1/auth/register", json={"phone_number": phone, "password": password})
        assert registered.status_code == 201, registered.text
        body = registered.json()
        customer = Customer(phone, password, "device-" + uuid.uuid4().hex[:8], body["user_id"], body["wallet_id"])
        await self.api.login(customer)
        return customer

    async def payment(self, customer: Customer, payment_id: str) -> dict[str, Any]:
        response = await self.api.client.get(f"/v1/payments/{payment_id}", headers=customer.headers())
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_for_status(self, customer: Customer, payment_id: str, status: str) -> dict[str, Any]:
        for _ in range(100):
            payment = await self.payment(customer, payment_id)
            if payment["status"] == status:
                return payment
            await asyncio.sleep(0.05)
        raise AssertionError(f"payment stayed {payment['status']}, expected {status}")

    async def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.simulator.url) as admin:
            response = await admin.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json()

    async def operation(self, payment_id: str) -> dict[str, Any]:
        [operation] = (await self.sim("GET", "/_sim/ledger", params={"reference": payment_id}))["operations"]
        result: dict[str, Any] = operation
        return result

    async def metric(self, name: str, **labels: str) -> float:
        text = (await self.api.client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    async def rows(self, query: str, **params: Any) -> list[Any]:
        engine = create_engine(self.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(sa.text(query), params)).all())
        finally:
            await engine.dispose()


@pytest.fixture
async def stack(migrated_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    config = SimulatorConfig.for_tests()
    config.providers["wave"].webhook_secret = SECRET
    config.providers["wave"].reversal_after_seconds = 0.3
    simulator = serve(create_simulator_app(config))
    settings = settings_for(
        migrated_url,
        tmp_path,
        KORA_PROVIDER_WAVE_URL=simulator.url,
        KORA_DEFAULT_PROVIDER="wave",
        KORA_PROVIDER_WAVE_WEBHOOK_SECRET=SECRET,
        KORA_SWEEP_INTERVAL_SECONDS="0",  # only webhooks resolve payments here
    )
    # Kora runs in the server's thread and event loop; the test only speaks HTTP to it.
    kora = serve(create_app(Kora(settings)))
    async with httpx.AsyncClient(base_url=kora.url, timeout=10) as client:
        stack = Stack(kora, simulator, migrated_url, Api(client))
        await stack.sim("PATCH", "/_sim/providers/wave", json={"webhook_url": f"{kora.url}/v1/webhooks/wave"})
        try:
            yield stack
        finally:
            kora.stop()
            simulator.stop()


def signed_event(payment_id: str, status: str, *, secret: str = SECRET, at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "id": f"EV_{uuid.uuid4().hex}",
            "type": f"checkout.session.{status}",
            "data": {"id": "cos-forged", "client_reference": payment_id, "status": status, "currency": "XOF"},
        },
        separators=(",", ":"),
    ).encode()
    return body, signature_header(secret, int(time.time()) if at is None else at, body)


async def deliver(stack: Stack, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Wave-Signature"] = signature
    return await stack.api.client.post("/v1/webhooks/wave", content=body, headers=headers)


async def pending_cash_in(stack: Stack, customer: Customer, amount: int) -> str:
    response = await stack.api.cash_in(customer, amount)
    assert response.json()["status"] == "INITIATED", response.text  # the provider has not decided
    payment_id: str = response.json()["id"]
    return payment_id


async def test_a_signed_webhook_settles_a_pending_cash_in_and_forgeries_change_nothing(stack: Stack) -> None:
    customer = await stack.customer("40")  # stuck at the provider until resolved
    payment_id = await pending_cash_in(stack, customer, 7_000)

    forged = await deliver(stack, *signed_event(payment_id, "succeeded", secret="whsec_attacker"))
    stale = await deliver(stack, *signed_event(payment_id, "succeeded", at=int(time.time()) - 600))
    future = await deliver(stack, *signed_event(payment_id, "succeeded", at=int(time.time()) + 600))
    unsigned = await deliver(stack, signed_event(payment_id, "succeeded")[0], None)
    for response, code in ((forged, "webhook_signature_invalid"), (stale, "webhook_stale"), (future, "webhook_stale")):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code
    assert unsigned.status_code == 401
    assert (await stack.payment(customer, payment_id))["status"] == "INITIATED"
    assert (await stack.api.balance(customer))["balance"] == 0

    operation = await stack.operation(payment_id)
    await stack.sim("POST", f"/_sim/operations/{operation['id']}/resolve", json={"status": "succeeded"})
    captured = await stack.wait_for_status(customer, payment_id, "CAPTURED")
    assert captured["failure_code"] is None
    assert (await stack.api.balance(customer))["balance"] == 7_000
    [(outcome, receipt_payment)] = await stack.rows(
        "SELECT outcome, payment_id FROM webhook_receipts WHERE provider = 'wave'"
    )
    assert outcome == "applied"
    assert str(receipt_payment).replace("-", "") == payment_id.replace("-", "")
    assert await stack.metric("kora_webhooks_received_total", provider="wave", outcome="applied") == 1
    assert await stack.metric("kora_webhooks_rejected_total", provider="wave", reason="forged") == 1
    assert await stack.metric("kora_webhooks_rejected_total", provider="wave", reason="stale") == 1
    assert await stack.metric("kora_webhooks_rejected_total", provider="wave", reason="future") == 1
    assert await stack.metric("kora_webhooks_rejected_total", provider="wave", reason="missing_signature") == 1


async def test_a_failed_checkout_webhook_fails_the_pending_cash_in(stack: Stack) -> None:
    customer = await stack.customer("40")
    payment_id = await pending_cash_in(stack, customer, 3_000)
    operation = await stack.operation(payment_id)
    await stack.sim(
        "POST", f"/_sim/operations/{operation['id']}/resolve", json={"status": "failed", "reason": "session-expired"}
    )
    failed = await stack.wait_for_status(customer, payment_id, "FAILED")
    assert failed["failure_code"] == "session_expired"
    assert (await stack.api.balance(customer))["balance"] == 0


async def test_duplicate_and_replayed_webhooks_change_nothing(stack: Stack) -> None:
    await stack.sim(
        "PATCH", "/_sim/providers/wave", json={"processing": {"kind": "fixed", "min_ms": 1500, "max_ms": 1500}}
    )
    customer = await stack.customer("31")  # the provider sends its webhook twice
    payment_id = await pending_cash_in(stack, customer, 4_000)
    await stack.wait_for_status(customer, payment_id, "CAPTURED")
    operation = await stack.operation(payment_id)
    for _ in range(100):  # both copies answered 2xx: the provider stops re-sending
        if operation["callbacks_delivered"] == 2:
            break
        await asyncio.sleep(0.05)
        operation = await stack.operation(payment_id)
    assert (operation["callbacks_sent"], operation["callbacks_delivered"]) == (2, 2)
    assert (await stack.api.balance(customer))["balance"] == 4_000
    entries = await stack.api.client.get("/v1/wallet/entries", headers=customer.headers())
    assert len(entries.json()["items"]) == 1  # credited once
    receipts = await stack.rows("SELECT outcome FROM webhook_receipts")
    assert [row[0] for row in receipts] == ["applied"]
    copies = await stack.metric("kora_webhooks_received_total", provider="wave", outcome="duplicate")
    copies += await stack.metric("kora_webhooks_received_total", provider="wave", outcome="replayed")
    assert copies == 1

    # A byte-identical copy of an authentic delivery, sent again: acknowledged, no effect.
    body, signature = signed_event(payment_id, "succeeded")
    first, again = await deliver(stack, body, signature), await deliver(stack, body, signature)
    assert (first.status_code, first.json()["status"]) == (200, "applied")
    assert (again.status_code, again.json()["status"]) == (200, "replayed")
    assert (await stack.api.balance(customer))["balance"] == 4_000


async def test_a_reversal_after_success_is_flagged_never_applied(stack: Stack) -> None:
    customer = await stack.customer("50")  # succeeds, then the provider reverses it
    response = await stack.api.cash_in(customer, 2_500)
    payment_id = response.json()["id"]
    assert response.json()["status"] == "CAPTURED"
    flagged: list[Any] = []
    for _ in range(100):
        flagged = await stack.rows(
            "SELECT actor FROM audit_log WHERE action = 'payment.cash_in.conflicting_answer' AND subject = :subject",
            subject=f"payment:{payment_id}",
        )
        if flagged:
            break
        await asyncio.sleep(0.05)
    assert [row[0] for row in flagged] == ["provider:wave"]
    assert (await stack.payment(customer, payment_id))["status"] == "CAPTURED"
    assert (await stack.api.balance(customer))["balance"] == 2_500


async def test_the_cash_in_trace_continues_through_the_webhook(stack: Stack, spans: InMemorySpanExporter) -> None:
    customer = await stack.customer("40")
    payment_id = await pending_cash_in(stack, customer, 1_000)
    operation = await stack.operation(payment_id)
    await stack.sim("POST", f"/_sim/operations/{operation['id']}/resolve", json={"status": "succeeded"})
    await stack.wait_for_status(customer, payment_id, "CAPTURED")

    def trace_of(predicate: Callable[[Any], bool]) -> set[int]:
        return {span.context.trace_id for span in spans.get_finished_spans() if predicate(span)}

    cash_in = trace_of(lambda span: span.name == "payments.cash_in")
    # The status is visible once the webhook's transaction commits; its span ends just after.
    for _ in range(100):
        webhook = trace_of(lambda span: span.name == "webhook.receive")
        if webhook:
            break
        await asyncio.sleep(0.05)
    assert cash_in
    assert webhook == cash_in


async def test_an_unknown_provider_has_no_webhook_endpoint(stack: Stack) -> None:
    response = await stack.api.client.post("/v1/webhooks/nobody", content=b"{}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def chunked(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_bodies_are_capped_as_they_stream_and_malformed_timestamps_are_refused(stack: Stack) -> None:
    customer = await stack.customer("40")
    payment_id = await pending_cash_in(stack, customer, 3_000)
    headers = {"Content-Type": "application/json"}

    # No Content-Length (chunked): the cap is counted while reading, never after.
    endless = chunked(*[b" " * 16_384] * 8)  # 128 KiB
    too_large = await stack.api.client.post("/v1/webhooks/wave", content=endless, headers=headers)
    assert (too_large.status_code, too_large.json()["code"]) == (413, "payload_too_large")
    assert too_large.headers["content-type"].startswith("application/problem+json")
    declared = await stack.api.client.post("/v1/webhooks/wave", content=b" " * 70_000, headers=headers)
    assert (declared.status_code, declared.json()["code"]) == (413, "payload_too_large")

    # A Unicode digit passes str.isdigit(): a malformed signature, never a 500.
    body, signature = signed_event(payment_id, "succeeded")
    timestamp, v1 = signature.split(",")
    for header in (f"t=\u00b2,{v1}", f"{timestamp}\u00b2,{v1}"):
        refused = await stack.api.client.post(
            "/v1/webhooks/wave", content=body, headers={**headers, "Wave-Signature": header.encode("latin-1")}
        )
        assert (refused.status_code, refused.json()["code"]) == (401, "webhook_signature_invalid")
    assert (await stack.payment(customer, payment_id))["status"] == "INITIATED"

    # An honest event sent in chunks is read whole and applied.
    applied = await stack.api.client.post(
        "/v1/webhooks/wave",
        content=chunked(body[:10], body[10:]),
        headers={**headers, "Wave-Signature": signature},
    )
    assert (applied.status_code, applied.json()["status"]) == (200, "applied"), applied.text
    assert (await stack.payment(customer, payment_id))["status"] == "CAPTURED"


async def test_a_chunked_body_is_refused_once_past_the_cap_without_reading_the_rest(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    from asgi_lifespan import LifespanManager

    settings = settings_for(
        migrated_sqlite_url,
        tmp_path,
        KORA_PROVIDER_WAVE_URL="http://127.0.0.1:9",  # never called: the body is refused first
        KORA_PROVIDER_WAVE_WEBHOOK_SECRET=SECRET,
        KORA_SWEEP_INTERVAL_SECONDS="0",
    )
    app = create_app(Kora(settings))
    sent = 0

    async def sixteen_mebibytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1024):
            sent += 1
            yield b" " * 16_384

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)  # hands the body to the app as it is read
        async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
            refused = await client.post("/v1/webhooks/wave", content=sixteen_mebibytes())
    assert (refused.status_code, refused.json()["code"]) == (413, "payload_too_large")
    assert sent <= 5  # 64 KiB and one chunk past it, not 16 MiB
