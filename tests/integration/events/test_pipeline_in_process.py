"""`kora serve`'s lifespan running the relay and the consumers in process, on the embedded stream
(the default) and on JetStream: a request's events reach a consumer on their own, and the
consumer's span continues the request's trace (W3C context carried through the outbox row and the
message), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.bootstrap import Kora
from kora.events import Envelope
from kora.events.ports import ConsumerSpec
from kora.http.app import create_app
from tests.integration.events.nats_support import SHARED_NATS_URL, SharedNats
from tests.support.api import Api
from tests.support.api import test_settings as settings_for


@dataclass
class Recorder:
    name: str = "test-recorder"
    seen: list[Envelope] = field(default_factory=list)

    @property
    def spec(self) -> ConsumerSpec:
        return ConsumerSpec(self.name, ("kora.events.payment.>",), backoff_seconds=(0.1,))

    @property
    def handles(self) -> frozenset[tuple[str, int]]:
        return frozenset({("payment.status_changed", 1)})

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        self.seen.append(event)


@pytest.fixture(params=["inprocess", "nats"])
def bus_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """The embedded stream, or JetStream (a namespace of its own on the shared server)."""
    if request.param == "inprocess":
        return {"KORA_EVENTS_BUS": "inprocess"}
    nats: SharedNats = request.getfixturevalue("shared_nats")
    return {
        "KORA_EVENTS_BUS": "nats",
        "KORA_NATS_URL": SHARED_NATS_URL,
        "KORA_NATS_STREAM": nats.stream,
        "KORA_NATS_DLQ_STREAM": nats.dlq_stream,
        "KORA_NATS_NAMESPACE": nats.namespace,
    }


@pytest.fixture
async def serving(
    migrated_url: str, tmp_path: Path, bus_settings: dict[str, str]
) -> AsyncIterator[tuple[Api, Recorder]]:
    kora = Kora(
        settings_for(
            migrated_url, tmp_path, KORA_EVENTS_IN_PROCESS="true", KORA_RELAY_IDLE_SECONDS="0.05", **bus_settings
        )
    )
    recorder = Recorder()
    kora.events.handlers[recorder.name] = recorder
    app = create_app(kora)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
            api = Api(client)
            api.kora = kora  # type: ignore[attr-defined]
            yield api, recorder


async def _until(predicate: Callable[[], bool], limit_seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the consumer")
        await asyncio.sleep(0.05)


async def test_the_consumer_span_continues_the_request_trace(
    serving: tuple[Api, Recorder], spans: InMemorySpanExporter
) -> None:
    api, recorder = serving
    alice = await api.customer(fund=5_000)
    bob = await api.customer()
    response = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=1_200, currency="XOF")
    assert response.status_code == 201, response.text
    payment_id = response.json()["id"]

    await _until(lambda: any(e.payload["payment_id"] == payment_id for e in recorder.seen))
    event = next(e for e in recorder.seen if e.payload["payment_id"] == payment_id)
    assert event.payload["status"] == "SETTLED"
    assert event.correlation_id == response.headers["X-Correlation-ID"]

    def consumer_spans() -> list[Any]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.name == "consume payment.status_changed"
            and s.attributes is not None
            and s.attributes.get("messaging.message.id") == str(event.id)
            and s.attributes.get("messaging.consumer.group.name") == recorder.name
        ]

    await _until(lambda: bool(consumer_spans()))  # the span ends just after the effect
    request_traces = {
        s.context.trace_id
        for s in spans.get_finished_spans()
        if s.name.startswith("POST /v1/transfers") or s.name == "payments.transfer"
    }
    assert request_traces
    [span] = consumer_spans()
    assert span.context.trace_id in request_traces
    assert span.parent is not None


async def test_a_payment_reaches_consumers_without_any_manual_step(serving: tuple[Api, Recorder]) -> None:
    api, recorder = serving
    customer = await api.customer()
    cash_in = await api.cash_in(customer, 3_000)
    payment_id = cash_in.json()["id"]
    await _until(lambda: any(e.payload["payment_id"] == payment_id for e in recorder.seen))
    ids = [e.id for e in recorder.seen]
    assert len(ids) == len(set(ids))
    assert uuid.UUID(str(ids[0]))
