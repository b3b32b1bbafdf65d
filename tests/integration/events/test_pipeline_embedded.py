"""The event pipeline on the embedded bus (the stream table), on SQLite and PostgreSQL: outbox
written with the state change, relay at least once with duplicates dropped, consumer effects
exactly once under redelivery and replay, forged/unsigned/malformed/poison events in the
dead-letter queue and re-driven, audited operations, and a consumer span in the request's trace."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.bootstrap import Kora
from kora.events import Envelope
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.adapters.tables import event_outbox, event_stream
from kora.events.ports import ConsumerSpec, OutgoingMessage
from kora.events.runtime import ConsumerRunner
from tests.support.api import Api


@dataclass
class CountingHandler:
    """A consumer whose effect is observable: it counts what it applied, and fails on demand."""

    name: str = "test-counter"
    applied: list[uuid.UUID] = field(default_factory=list)
    fail_on: set[uuid.UUID] = field(default_factory=set)

    @property
    def spec(self) -> ConsumerSpec:
        return ConsumerSpec(self.name, ("kora.events.>",), max_deliver=3, backoff_seconds=(0.0,))

    @property
    def handles(self) -> frozenset[tuple[str, int]]:
        return frozenset({("payment.status_changed", 1), ("ledger.transaction_posted", 1)})

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        if event.id in self.fail_on:
            raise RuntimeError("poison for this consumer")
        self.applied.append(event.id)


@pytest.fixture
def kora_api(api: Api) -> tuple[Api, Kora]:
    kora: Kora = api.kora  # type: ignore[attr-defined]
    return api, kora


async def _traffic(api: Api) -> None:
    alice = await api.customer(fund=10_000)
    bob = await api.customer()
    response = await api.transfer(alice, recipient_wallet_id=bob.wallet_id, amount=2_500, currency="XOF")
    assert response.status_code == 201, response.text


async def _drain_relay(kora: Kora) -> int:
    relay = await kora.events.relay()
    total = 0
    while (n := await relay.publish_once()) > 0:
        total += n
    return total


async def _outbox_ids(kora: Kora, *, unpublished_only: bool = False) -> list[uuid.UUID]:
    query = sa.select(event_outbox.c.event_id).order_by(event_outbox.c.seq)
    if unpublished_only:
        query = query.where(event_outbox.c.published_at.is_(None))
    async with kora.engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def _stream_rows(kora: Kora) -> list[Any]:
    async with kora.engine.connect() as conn:
        return list((await conn.execute(sa.select(event_stream).order_by(event_stream.c.seq))).all())


async def _runner(kora: Kora, handler: CountingHandler) -> tuple[ConsumerRunner, SqlStreamBus]:
    bus = await kora.events.bus()
    assert isinstance(bus, SqlStreamBus)
    runner = ConsumerRunner(
        handler,
        source=bus,
        engine=kora.engine,
        verifier=kora.event_verifier,
        clock=kora.clock,
        dead_letters=kora.events.dead_letters,
        metrics=kora.event_metrics,
    )
    return runner, bus


async def _consume_all(runner: ConsumerRunner, bus: SqlStreamBus) -> dict[str, int]:
    counts: dict[str, int] = {}
    while deliveries := await bus.fetch(runner.handler.spec, batch=50, wait_seconds=0.05):
        for outcome in await runner.process_batch(deliveries):  # one transaction per batch
            counts[outcome.word] = counts.get(outcome.word, 0) + 1
    return counts


async def test_state_changes_and_their_events_commit_together(kora_api: tuple[Api, Kora]) -> None:
    api, kora = kora_api
    await _traffic(api)
    ids = await _outbox_ids(kora)
    # register x2 (user_registered), cash-in (status + posting), transfer (status + posting)
    async with kora.engine.connect() as conn:
        types = list((await conn.execute(sa.select(event_outbox.c.type))).scalars())
    assert types.count("identity.user_registered") == 2
    assert types.count("ledger.transaction_posted") == 2
    assert types.count("payment.status_changed") >= 2
    assert len(ids) == len(set(ids))

    # A refused transfer (insufficient funds) moves nothing and announces no posting.
    before = len(ids)
    poor, rich = await api.customer(), await api.customer()
    refused = await api.transfer(poor, recipient_wallet_id=rich.wallet_id, amount=1_000, currency="XOF")
    assert refused.status_code == 422
    async with kora.engine.connect() as conn:
        new_types = list(
            (await conn.execute(sa.select(event_outbox.c.type).order_by(event_outbox.c.seq).offset(before))).scalars()
        )
    assert new_types == ["identity.user_registered", "identity.user_registered"]


async def test_relay_publishes_at_least_once_and_the_bus_drops_duplicates(kora_api: tuple[Api, Kora]) -> None:
    api, kora = kora_api
    await _traffic(api)
    written = await _outbox_ids(kora)
    assert await _drain_relay(kora) == len(written)
    assert await _outbox_ids(kora, unpublished_only=True) == []
    stream = await _stream_rows(kora)
    assert sorted(uuid.UUID(r.msg_id) for r in stream) == sorted(written)
    # In write order per aggregate (a payment's status change before its posting, and so on).
    async with kora.engine.connect() as conn:
        aggregate = dict((await conn.execute(sa.select(event_outbox.c.event_id, event_outbox.c.aggregate_id))).all())
    position = {uuid.UUID(r.msg_id): i for i, r in enumerate(stream)}
    last: dict[str, int] = {}
    for event_id in written:
        assert position[event_id] > last.get(aggregate[event_id], -1)
        last[aggregate[event_id]] = position[event_id]
    assert json.loads(stream[0].headers)["Nats-Msg-Id"] == stream[0].msg_id

    # A relay killed after publishing but before stamping: the rows are published again...
    async with kora.engine.begin() as conn:
        await conn.execute(event_outbox.update().values(published_at=None))
    assert await _drain_relay(kora) == len(written)
    # ...and the stream keeps one copy of each.
    assert len(await _stream_rows(kora)) == len(written)


async def test_effects_apply_once_under_redelivery_and_replay(kora_api: tuple[Api, Kora]) -> None:
    api, kora = kora_api
    await _traffic(api)
    await _drain_relay(kora)
    handler = CountingHandler()
    runner, bus = await _runner(kora, handler)
    counts = await _consume_all(runner, bus)
    payment_and_ledger = [r for r in await _stream_rows(kora) if "identity" not in r.subject]
    assert counts["applied"] == len(payment_and_ledger)
    assert counts["skipped"] == 2  # user_registered is not this consumer's
    assert sorted(handler.applied) == sorted(uuid.UUID(r.msg_id) for r in payment_and_ledger)

    # The same message delivered again (a redelivery after a lost ack) changes nothing.
    message = payment_and_ledger[0]
    again = await bus.publish(
        [OutgoingMessage(message.subject, f"redelivery-{uuid.uuid4()}", message.data.encode(), {})]
    )
    assert again == [None]
    assert (await _consume_all(runner, bus)) == {"duplicate": 1}

    # Replay from the first sequence: everything is already processed.
    words: dict[str, int] = {}
    async for delivery in bus.replay(handler.spec, from_seq=1):
        word = (await runner.process(delivery)).word
        words[word] = words.get(word, 0) + 1
    assert words.get("applied", 0) == 0
    assert words["duplicate"] == len(payment_and_ledger) + 1
    assert len(handler.applied) == len(payment_and_ledger)


async def test_forged_unsigned_and_malformed_events_are_dead_lettered(kora_api: tuple[Api, Kora]) -> None:
    api, kora = kora_api
    await _traffic(api)
    await _drain_relay(kora)
    handler = CountingHandler()
    runner, bus = await _runner(kora, handler)
    await _consume_all(runner, bus)
    genuine = next(r for r in await _stream_rows(kora) if "payment" in r.subject)
    data = json.loads(genuine.data)
    forged = {**data, "id": str(uuid.uuid4()), "payload": {**data["payload"], "amount": 999_999}}
    unsigned = {**data, "id": str(uuid.uuid4()), "signature": None, "key_id": None}
    await bus.publish(
        [
            OutgoingMessage(genuine.subject, "forged-1", json.dumps(forged).encode(), {}),
            OutgoingMessage(genuine.subject, "unsigned-1", json.dumps(unsigned).encode(), {}),
            OutgoingMessage(genuine.subject, "malformed-1", b"{not json", {}),
        ]
    )
    assert (await _consume_all(runner, bus)) == {"dead_lettered": 3}
    letters = await kora.events.dead_letters.find(consumer=handler.name)
    assert sorted(letter.reason for letter in letters) == ["forged", "malformed", "unsigned"]
    assert not set(handler.applied) & {uuid.UUID(forged["id"]), uuid.UUID(unsigned["id"])}
    # The dead-letter subject announced each one, with its reason.
    dlq = [r for r in await _stream_rows(kora) if r.subject == f"kora.dlq.{handler.name}"]
    assert sorted(json.loads(r.headers)["Kora-Dead-Letter-Reason"] for r in dlq) == ["forged", "malformed", "unsigned"]

    # Re-driving a forged event fails again (it stays open); dropping it closes it, audited.
    kora.events.handlers[handler.name] = handler
    forged_letter = next(letter for letter in letters if letter.reason == "forged")
    _, outcome = await kora.events.retry_dead_letter(forged_letter.id, actor="ops-test")
    assert outcome.word == "dead_lettered"
    await kora.events.drop_dead_letter(forged_letter.id, actor="ops-test", reason="forged event, investigated")
    assert (await kora.events.dead_letters.get(forged_letter.id)).status == "dropped"  # type: ignore[union-attr]
    assert (await kora.verify_audit()).ok


async def test_a_poison_event_is_retried_then_parked_then_redriven(kora_api: tuple[Api, Kora]) -> None:
    api, kora = kora_api
    await _traffic(api)
    await _drain_relay(kora)
    poison = uuid.UUID(next(r for r in await _stream_rows(kora) if "ledger" in r.subject).msg_id)
    handler = CountingHandler(fail_on={poison})
    runner, bus = await _runner(kora, handler)
    counts = await _consume_all(runner, bus)
    assert counts["retried"] == 2
    assert counts["dead_lettered"] == 1
    assert poison not in handler.applied
    [letter] = await kora.events.dead_letters.find(consumer=handler.name)
    assert letter.reason == "handler_failed"
    assert letter.deliveries == 3

    handler.fail_on.clear()  # the bug is fixed
    kora.events.handlers[handler.name] = handler
    _, outcome = await kora.events.retry_dead_letter(letter.id, actor="ops-test")
    assert outcome.word == "applied"
    assert handler.applied.count(poison) == 1
    assert (await kora.events.dead_letters.get(letter.id)).status == "retried"  # type: ignore[union-attr]
    with pytest.raises(LookupError):  # closed: a second re-drive is refused
        await kora.events.retry_dead_letter(letter.id, actor="ops-test")


async def test_consumer_lag_and_backlog_are_measured(kora_api: tuple[Api, Kora], tmp_path: Path) -> None:
    api, kora = kora_api
    await _traffic(api)
    relay = await kora.events.relay()
    backlog, age = await relay.refresh_backlog()
    assert backlog == len(await _outbox_ids(kora))
    assert age >= 0
    await _drain_relay(kora)
    assert (await relay.refresh_backlog())[0] == 0
    handler = CountingHandler()
    kora.events.handlers[handler.name] = handler
    lags = await kora.events.refresh_gauges()
    assert lags[handler.name] == len(await _stream_rows(kora))
    runner, bus = await _runner(kora, handler)
    await _consume_all(runner, bus)
    assert (await kora.events.refresh_gauges())[handler.name] == 0
    body, _ = kora.render_metrics(None)
    assert b"kora_outbox_backlog_events 0.0" in body
    assert b'kora_consumer_events_total{consumer="test-counter",outcome="applied"}' in body
