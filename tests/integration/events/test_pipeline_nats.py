"""The consumer runtime on JetStream and PostgreSQL: a real worker process killed mid-way
(SIGKILL) and restarted applies every event exactly once; redelivered and duplicate-published
events change nothing; forged and poison events end in the dead-letter queue (table and
`kora.dlq.<consumer>` subject) and can be re-driven; a replay from a sequence re-applies nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.bench_events import _payment_event
from kora.bootstrap import Kora
from kora.events import Envelope, Origin
from kora.events.adapters.outbox import write_outbox
from kora.events.adapters.tables import processed_events
from kora.events.consumers import daily_kpis
from kora.events.ports import ConsumerSpec, OutgoingMessage
from kora.events.relay import Relay
from kora.events.runtime import ConsumerRunner
from tests.integration.events.nats_support import SHARED_NATS_URL, SharedNats
from tests.support.api import test_settings as settings_for

EVENTS = 1_500


def _env(url: str, tmp_path: Path, nats: SharedNats) -> dict[str, str]:
    return {
        **os.environ,
        "KORA_DATABASE_URL": url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),
        "KORA_EVENTS_BUS": "nats",
        "KORA_NATS_URL": SHARED_NATS_URL,
        "KORA_NATS_STREAM": nats.stream,
        "KORA_NATS_DLQ_STREAM": nats.dlq_stream,
        "KORA_NATS_NAMESPACE": nats.namespace,
        "KORA_LOG_LEVEL": "WARNING",
    }


async def _publish_payments(kora: Kora, count: int) -> int:
    """`count` settled P2P payment events written to the outbox and relayed to JetStream;
    returns the total amount."""
    events = [_payment_event(i) for i in range(count)]
    async with kora.engine.begin() as conn:
        await write_outbox(conn, [(e, Origin()) for e in events], kora.event_signer, at=datetime.now(UTC))
    relay = Relay(kora.engine, await kora.events.bus(), kora.clock, batch_size=500)
    published = 0
    while (n := await relay.publish_once()) > 0:
        published += n
    assert published == count
    return sum(int(e.payload["amount"]) for e in events)


async def _processed(engine: object, consumer: str) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        value = await conn.execute(
            sa.select(sa.func.count()).select_from(processed_events).where(processed_events.c.consumer == consumer)
        )
        return int(value.scalar() or 0)


def _kora_for(url: str, tmp_path: Path, env: dict[str, str]) -> Kora:
    """A Kora on the same database, secrets and JetStream namespace as the `kora` processes."""
    return Kora(settings_for(url, tmp_path, **{k: v for k, v in env.items() if k.startswith("KORA_")}))


async def _wait(check: Callable[[], Awaitable[bool]], limit_seconds: float) -> None:
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_killed_worker_applies_every_event_exactly_once(
    migrated_postgres_url: str, tmp_path: Path, shared_nats: SharedNats
) -> None:
    env = _env(migrated_postgres_url, tmp_path, shared_nats)
    kora = _kora_for(migrated_postgres_url, tmp_path, env)
    try:
        total = await _publish_payments(kora, EVENTS)
        log = tmp_path / "worker.log"

        def worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "kora", "worker", "--consumer", "kpi"],
                env=env,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
            )

        first = worker()
        try:
            await _wait(lambda: _more_than(kora, 50), 60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        assert await _processed(kora.engine, "kpi") < EVENTS, "the worker finished before it could be killed"
        second = worker()
        try:
            await _wait(lambda: _all_done(kora), 120)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        assert second.returncode == 0, log.read_text()[-2000:]

        today = datetime.now(UTC).date()
        rows = await daily_kpis(kora.engine, today - timedelta(days=1), today + timedelta(days=1))
        settled = [r for r in rows if r.status == "SETTLED"]
        # Each payment counted once, although some were delivered twice around the kill.
        assert sum(r.count for r in settled) == EVENTS
        assert sum(r.amount for r in settled) == total
        assert await _processed(kora.engine, "kpi") == EVENTS
    finally:
        await kora.aclose()


async def _more_than(kora: Kora, n: int) -> bool:
    return await _processed(kora.engine, "kpi") > n


async def _all_done(kora: Kora) -> bool:
    return await _processed(kora.engine, "kpi") >= EVENTS


@dataclass
class Flaky:
    """A consumer whose effect is a row count; it fails on the events it is told to."""

    name: str = "flaky"
    fail_on: set[uuid.UUID] = field(default_factory=set)
    applied: list[uuid.UUID] = field(default_factory=list)

    @property
    def spec(self) -> ConsumerSpec:
        return ConsumerSpec(
            self.name, ("kora.events.payment.status_changed.v1",), max_deliver=3, backoff_seconds=(0.2,)
        )

    @property
    def handles(self) -> frozenset[tuple[str, int]]:
        return frozenset({("payment.status_changed", 1)})

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None:
        if event.id in self.fail_on:
            raise RuntimeError("poison")
        self.applied.append(event.id)


async def _drain(runner: ConsumerRunner, source: object, *, quiet_seconds: float = 1.5) -> dict[str, int]:
    counts: dict[str, int] = {}
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < quiet_seconds:
        deliveries = await source.fetch(runner.handler.spec, batch=100, wait_seconds=0.3)  # type: ignore[attr-defined]
        if deliveries:
            idle_since = time.monotonic()
        for delivery in deliveries:
            word = (await runner.process(delivery)).word
            counts[word] = counts.get(word, 0) + 1
    return counts


async def test_duplicates_forgeries_poison_and_replay_on_jetstream(
    migrated_postgres_url: str, tmp_path: Path, shared_nats: SharedNats
) -> None:
    env = _env(migrated_postgres_url, tmp_path, shared_nats)
    kora = _kora_for(migrated_postgres_url, tmp_path, env)
    try:
        await _publish_payments(kora, 20)
        bus = await kora.events.bus()
        first = [d async for d in bus.replay(Flaky().spec, from_seq=1)]
        poison = uuid.UUID(first[3].headers["Nats-Msg-Id"])
        handler = Flaky(fail_on={poison})
        kora.events.handlers[handler.name] = handler
        runner = await kora.events.runner(handler.name)

        # A duplicate publish (same event id) is dropped by JetStream; a forged and an unsigned one pass
        # the bus but not the consumer.
        data = json.loads(first[0].data)
        forged = {**data, "id": str(uuid.uuid4()), "payload": {**data["payload"], "amount": 1}}
        unsigned = {**data, "id": str(uuid.uuid4()), "signature": None}
        subject = "kora.events.payment.status_changed.v1"
        results = await bus.publish(
            [
                OutgoingMessage(subject, first[0].headers["Nats-Msg-Id"], first[0].data, {}),
                OutgoingMessage(subject, forged["id"], json.dumps(forged).encode(), {}),
                OutgoingMessage(subject, unsigned["id"], json.dumps(unsigned).encode(), {}),
            ]
        )
        assert results == [None, None, None]
        assert await bus.stream_last_seq() == 22  # type: ignore[attr-defined]

        counts = await _drain(runner, bus)
        assert counts == {"applied": 19, "retried": 2, "dead_lettered": 3}
        assert poison not in handler.applied
        letters = {letter.reason: letter for letter in await kora.events.dead_letters.find(consumer=handler.name)}
        assert set(letters) == {"forged", "unsigned", "handler_failed"}
        assert letters["handler_failed"].deliveries == 3
        # ...announced on the dead-letter subject with the reason.
        dlq = await shared_nats.connect(stream=shared_nats.dlq_stream)
        try:
            reasons = [
                d.headers.get("Kora-Dead-Letter-Reason")
                async for d in dlq.replay(ConsumerSpec("dlq-check", (f"kora.dlq.{handler.name}",)), from_seq=1)
            ]
        finally:
            await dlq.close()
        assert sorted(reasons) == ["forged", "handler_failed", "unsigned"]  # type: ignore[type-var]

        # The bug fixed, the poison event is re-driven: applied once; replay re-applies nothing.
        handler.fail_on.clear()
        _, outcome = await kora.events.retry_dead_letter(letters["handler_failed"].id, actor="ops-test")
        assert outcome.word == "applied"
        replayed = await kora.events.replay(handler.name, from_seq=1, actor="ops-test")
        assert replayed.get("applied", 0) == 0
        assert replayed["duplicate"] == 20
        assert sorted(handler.applied) == sorted({uuid.UUID(d.headers["Nats-Msg-Id"]) for d in first})
        assert (await kora.verify_audit()).ok
    finally:
        await kora.aclose()
