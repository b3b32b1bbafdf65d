"""The pipeline when things go wrong: hostile bytes, a dead-letter store that fails, a bus that
refuses part of a batch, a broker the API cannot reach, a replay whose effect fails, and a client
smuggling data through W3C baggage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kora.bootstrap import Kora
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.adapters.tables import event_outbox, event_stream
from kora.events.ports import OutgoingMessage, PublishError
from kora.events.relay import Relay
from tests.integration.events.test_pipeline_embedded import (
    CountingHandler,
    _consume_all,
    _drain_relay,
    _runner,
    _stream_rows,
    _traffic,
)
from tests.support.api import Api
from tests.support.api import test_settings as settings_for


def _kora(api: Api) -> Kora:
    kora: Kora = api.kora  # type: ignore[attr-defined]
    return kora


async def test_hostile_bytes_are_parked_intact_and_the_consumer_goes_on(api: Api) -> None:
    kora = _kora(api)
    await _traffic(api)
    await _drain_relay(kora)
    handler = CountingHandler()
    runner, bus = await _runner(kora, handler)
    hostile = b'{"id": "\x00", "\xff\xfe": 1}'
    await bus.publish([OutgoingMessage("kora.events.payment.status_changed.v1", "hostile-1", hostile, {})])
    counts = await _consume_all(runner, bus)
    assert counts["dead_lettered"] == 1
    assert counts["applied"] > 0  # the others went through
    [letter] = await kora.events.dead_letters.find(consumer=handler.name)
    assert letter.reason == "malformed"
    assert letter.raw() == hostile  # stored as base64, byte for byte


async def test_a_failing_dead_letter_store_keeps_the_message_for_later(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    kora = _kora(api)
    handler = CountingHandler()
    runner, bus = await _runner(kora, handler)
    await bus.publish([OutgoingMessage("kora.events.payment.status_changed.v1", "bad-1", b"not json", {})])

    async def store_down(**_: Any) -> uuid.UUID:
        raise ConnectionError("dead-letter store unreachable")

    monkeypatch.setattr(kora.events.dead_letters, "add", store_down)
    [delivery] = await bus.fetch(handler.spec, batch=10, wait_seconds=0.1)
    assert (await runner.process(delivery)).word == "retried"
    monkeypatch.undo()
    [again] = await bus.fetch(handler.spec, batch=10, wait_seconds=1.0)  # backoff 0 s in this spec
    assert again.delivered == 2
    assert (await runner.process(again)).word == "dead_lettered"


class RefusingBus:
    """The embedded stream, except that it refuses the first publish of some events once."""

    def __init__(self, inner: SqlStreamBus, refuse: set[str]) -> None:
        self._inner = inner
        self._refuse = set(refuse)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[PublishError | None]:
        results: list[PublishError | None] = []
        for message in messages:
            if message.msg_id in self._refuse:
                self._refuse.discard(message.msg_id)
                results.append(PublishError("no ack"))
            else:
                results.extend(await self._inner.publish([message]))
        return results


async def test_an_aggregates_later_events_never_overtake_one_that_failed(api: Api) -> None:
    kora = _kora(api)
    await _traffic(api)  # a transfer: its status event and its posting share the payment's partition
    async with kora.engine.connect() as conn:
        rows = (await conn.execute(sa.select(event_outbox).order_by(event_outbox.c.seq))).all()
    by_aggregate: dict[str, list[Any]] = {}
    for row in rows:
        by_aggregate.setdefault(row.aggregate_id, []).append(row)
    first, second = next(events for events in by_aggregate.values() if len(events) >= 2)[:2]
    inner = await kora.events.bus()
    assert isinstance(inner, SqlStreamBus)
    relay = Relay(kora.engine, RefusingBus(inner, {str(first.event_id)}), kora.clock)

    await relay.publish_once()
    published = [r.msg_id for r in await _stream_rows(kora)]
    assert str(first.event_id) not in published
    assert str(second.event_id) not in published  # held back behind the failed one
    while await relay.publish_once():
        pass
    published = [r.msg_id for r in await _stream_rows(kora)]
    assert published.index(str(first.event_id)) < published.index(str(second.event_id))
    assert sorted(published) == sorted(str(r.event_id) for r in rows)


async def test_the_api_redrives_dead_letters_without_reaching_the_broker(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(migrated_sqlite_url, tmp_path, KORA_EVENTS_BUS="nats", KORA_NATS_URL="nats://127.0.0.1:9")
    kora = Kora(settings)
    try:
        letter_id = await kora.events.dead_letters.add(
            consumer="kpi",
            event_id=None,
            subject="kora.events.payment.status_changed.v1",
            stream_seq=7,
            data=b"{}",
            reason="malformed",
            detail="test",
            deliveries=1,
            at=kora.clock.now(),
        )
        letter, outcome = await kora.events.retry_dead_letter(letter_id, actor="ops-test")
        assert outcome.word == "dead_lettered"  # still malformed, but answered: no broker needed
        assert letter.id == letter_id
    finally:
        await kora.aclose()


async def test_a_replayed_event_whose_effect_fails_is_parked_not_lost(api: Api) -> None:
    kora = _kora(api)
    await _traffic(api)
    await _drain_relay(kora)
    stream = await _stream_rows(kora)
    poison = uuid.UUID(next(r for r in stream if "payment" in r.subject).msg_id)
    handler = CountingHandler(name="replayed", fail_on={poison})
    kora.events.handlers[handler.name] = handler
    counts = await kora.events.replay(handler.name, from_seq=1, actor="ops-test")
    assert counts["dead_lettered"] == 1
    assert "retried" not in counts
    [letter] = await kora.events.dead_letters.find(consumer=handler.name)
    assert letter.event_id == str(poison)


async def test_baggage_from_a_client_never_reaches_an_event(api: Api) -> None:
    kora = _kora(api)
    response = await api.client.post(
        "/v1/auth/register",
        json={"phone_number": "+2250701020304", "password": "correct-horse-battery-9"},
        headers={
            "baggage": "phone=%2B2250701020304,name=Awa%20Kone",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
    )
    assert response.status_code == 201, response.text
    async with kora.engine.connect() as conn:
        envelopes = list((await conn.execute(sa.select(event_outbox.c.envelope, event_outbox.c.headers))).all())
    assert envelopes
    for envelope, headers in envelopes:
        for text in (envelope, headers):
            assert "baggage" not in text
            assert "2250701020304" not in text
            assert "Awa" not in text
        assert set(json.loads(envelope)["trace"]) <= {"traceparent", "tracestate"}
    async with kora.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(event_stream))).scalar() == 0
