"""The relay: publishes the outbox to the bus, in batches, in order per aggregate, at least once
(ADR 0018).

On PostgreSQL a relay locks the outbox partitions it works on (FOR UPDATE SKIP LOCKED) for
the length of a batch: several relays share the partitions and never publish the same
aggregate's events concurrently, so those leave in the order they were written. The rows are
stamped `published_at` in the same transaction, after the bus acknowledged them: a relay killed
mid-batch rolls back, its rows are published again by the next one, and the bus drops the
duplicates by event id (`Nats-Msg-Id`). On SQLite (one writer, the embedded default) the batch
is read, published, then stamped in two short transactions, with the same at-least-once result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from datetime import timedelta

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.adapters.outbox import OutboxRow, SqlOutboxReader
from kora.events.domain import OUTBOX_PARTITIONS
from kora.events.ports import EventBus, OutgoingMessage
from kora.kernel import Clock
from kora.observability import get_tracer
from kora.observability.event_metrics import EventMetrics

_tracer = get_tracer("kora.events")


def message_for(row: OutboxRow) -> OutgoingMessage:
    """The bus message of an outbox row: the envelope as is, with the headers written beside it
    (`message_headers`: event id as the de-duplication id, type, version, trace context)."""
    return OutgoingMessage(row.subject, str(row.event_id), row.envelope.encode("utf-8"), json.loads(row.headers))


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        bus: EventBus,
        clock: Clock,
        *,
        metrics: EventMetrics | None = None,
        batch_size: int = 1000,
        partitions_per_claim: int = OUTBOX_PARTITIONS // 2,
        idle_seconds: float = 0.05,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        if batch_size < 1 or not 1 <= partitions_per_claim <= OUTBOX_PARTITIONS:
            raise ValueError("batch_size must be positive and partitions_per_claim within 1..16")
        self._engine = engine
        self._bus = bus
        self._clock = clock
        self._metrics = metrics
        self._batch = batch_size
        self._partitions = partitions_per_claim
        self._idle = idle_seconds
        self._retention = retention
        self._pg = engine.dialect.name == "postgresql"

    async def publish_once(self) -> int:
        """Publish one batch; returns how many events the bus acknowledged."""
        started = time.perf_counter()
        with _tracer.start_as_current_span("events.relay_batch") as span:
            published = await (self._batch_locked() if self._pg else self._batch_unlocked())
            span.set_attribute("kora.events.published", published)
        if self._metrics is not None and published:
            self._metrics.relay_batch.observe(time.perf_counter() - started)
        return published

    async def _batch_locked(self) -> int:
        async with self._engine.connect() as conn, conn.begin():
            reader = SqlOutboxReader(conn)
            partitions = await reader.claim_partitions(self._partitions)
            if not partitions:
                return 0
            rows = await reader.unpublished(partitions, self._batch)
            if not rows:
                return 0
            ok, failed = await self._publish(rows)
            await reader.mark_published(ok, self._clock.now())
            await reader.mark_failed(failed)
        return len(ok)

    async def _batch_unlocked(self) -> int:
        async with self._engine.connect() as conn:
            async with conn.begin():
                rows = await SqlOutboxReader(conn).unpublished(range(OUTBOX_PARTITIONS), self._batch)
            if not rows:
                return 0
            ok, failed = await self._publish(rows)
            async with conn.begin():
                reader = SqlOutboxReader(conn)
                await reader.mark_published(ok, self._clock.now())
                await reader.mark_failed(failed)
        return len(ok)

    async def _publish(self, rows: list[OutboxRow]) -> tuple[list[int], list[tuple[int, str]]]:
        """Publish in waves: the first unpublished event of every aggregate in the batch, then
        the second, and so on, each wave pipelined and acknowledged before the next. An
        aggregate whose event failed sends nothing more in this batch, so its later events can
        never overtake it on the bus; they stay in the outbox for the next batch."""
        queues: dict[str, deque[OutboxRow]] = {}
        for row in rows:
            queues.setdefault(row.aggregate_id, deque()).append(row)
        ok: list[int] = []
        failed: list[tuple[int, str]] = []
        types_ok: Counter[str] = Counter()
        types_failed: Counter[str] = Counter()
        while wave := [queue.popleft() for queue in queues.values() if queue]:
            results = await self._bus.publish([message_for(row) for row in wave])
            for row, error in zip(wave, results, strict=True):
                kind = row.subject.removeprefix("kora.events.").rsplit(".v", 1)[0]
                if error is None:
                    ok.append(row.seq)
                    types_ok[kind] += 1
                else:
                    failed.append((row.seq, str(error)))
                    types_failed[kind] += 1
                    queues[row.aggregate_id].clear()
        if failed:
            logger.warning("outbox publish failed for some events", failed=len(failed), first_error=failed[0][1])
        if self._metrics is not None:
            for kind in types_ok.keys() | types_failed.keys():
                self._metrics.relay_published(kind, types_ok[kind], types_failed[kind])
        return ok, failed

    async def refresh_backlog(self) -> tuple[int, float]:
        async with self._engine.connect() as conn:
            backlog, age = await SqlOutboxReader(conn).backlog(self._clock.now())
        if self._metrics is not None:
            self._metrics.set_outbox(backlog, age)
        return backlog, age

    async def purge(self) -> int:
        async with self._engine.begin() as conn:
            return await SqlOutboxReader(conn).purge_published(self._clock.now() - self._retention, 10_000)

    async def run(self, stop: asyncio.Event, *, housekeeping_seconds: float = 5.0) -> None:
        """Publish until `stop` is set: at once while there is a backlog, every `idle_seconds`
        otherwise. Bus or database trouble is logged and retried; nothing is lost meanwhile."""
        next_housekeeping = 0.0
        while not stop.is_set():
            published = 0
            try:
                published = await self.publish_once()
                if time.monotonic() >= next_housekeeping:
                    next_housekeeping = time.monotonic() + housekeeping_seconds
                    await self.refresh_backlog()
                    await self.purge()
            except Exception as exc:
                logger.opt(exception=exc).warning("relay batch failed; retrying")
                published = 0
                await sleep_or_stop(stop, 1.0)
            if published == 0:  # nothing claimable: empty, or every waiting partition is another relay's
                await sleep_or_stop(stop, self._idle)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
