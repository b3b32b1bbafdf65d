"""The embedded bus: a stream kept in a table of the same database (what JetStream keeps when
the bus is NATS), with durable consumers, explicit acks, redelivery with backoff and replay.

It makes the embedded default (one SQLite file, one process) behave like production: a
duplicate publish (same event id) is dropped, a consumer resumes after a restart from its last
acknowledged position, and an unacknowledged message is delivered again.

Subjects follow NATS's rules: tokens separated by dots, `*` matches one token, `>` the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
import uuid6
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.adapters.bytes_as_text import bytes_to_text, text_to_bytes
from kora.events.adapters.tables import event_consumer_cursors, event_stream
from kora.events.domain import dlq_subject_for
from kora.events.ports import ConsumerSpec, Delivery, OutgoingMessage, PublishError
from kora.kernel import Clock

_STREAM_LOCK = 0x4B4F5241  # "KORA": the advisory lock serialising writes to event_stream


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


@dataclass(slots=True)
class SqlDelivery:
    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream_seq: int
    delivered: int
    published_at: datetime | None
    _settle: Callable[[SqlDelivery, float | None], Awaitable[None]] | None = None

    async def ack(self) -> None:
        if self._settle is not None:
            await self._settle(self, None)

    async def nak(self, delay_seconds: float) -> None:
        if self._settle is not None:
            await self._settle(self, delay_seconds)


@dataclass
class _ConsumerState:
    position: int  # highest stream seq handed out
    in_flight: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)
    retries: list[tuple[float, SqlDelivery]] = field(default_factory=list)
    committed: int = 0


class SqlStreamBus:
    """EventBus and EventSource on the `event_stream` table."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"
        self._states: dict[str, _ConsumerState] = {}
        self._published = asyncio.Event()

    # -- publishing ---------------------------------------------------------------------------
    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[PublishError | None]:
        if not messages:
            return []
        insert = (postgresql.insert if self._pg else sqlite.insert)(event_stream)
        rows = [
            {
                "msg_id": m.msg_id,
                "subject": m.subject,
                "data": bytes_to_text(m.data),
                "headers": json.dumps(dict(m.headers), sort_keys=True),
                "stored_at": self._clock.now(),
            }
            for m in messages
        ]
        try:
            async with self._engine.begin() as conn:
                if self._pg:
                    # One writer at a time, so stream sequence order is commit order: a consumer
                    # never sees seq N+1 committed while N is still in flight (and skips N).
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_STREAM_LOCK)))
                await conn.execute(insert.on_conflict_do_nothing(index_elements=["msg_id"]), rows)
        except Exception as exc:  # the relay keeps the events and retries
            error = PublishError(f"stream write failed: {type(exc).__name__}")
            return [error] * len(messages)
        self._published.set()
        return [None] * len(messages)

    async def publish_dead_letter(self, consumer: str, data: bytes, headers: Mapping[str, str]) -> None:
        message = OutgoingMessage(dlq_subject_for(consumer), f"dlq-{uuid6.uuid7()}", data, headers)
        errors = await self.publish([message])
        if errors[0] is not None:
            raise errors[0]

    # -- consuming ----------------------------------------------------------------------------
    async def fetch(self, consumer: ConsumerSpec, *, batch: int, wait_seconds: float) -> list[Delivery]:
        state = await self._state(consumer.name)
        deadline = time.monotonic() + wait_seconds
        while True:
            out: list[Delivery] = self._due_retries(state, batch)
            if len(out) < batch:
                out.extend(await self._new(consumer, state, batch - len(out)))
            if out or time.monotonic() >= deadline:
                return out
            self._published.clear()
            wait = min(deadline - time.monotonic(), self._next_retry_in(state))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), timeout=max(wait, 0.0))

    async def replay(
        self, consumer: ConsumerSpec, *, from_seq: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[Delivery]:
        s = event_stream
        after = (from_seq or 1) - 1
        while True:
            query = sa.select(s).where(s.c.seq > after).order_by(s.c.seq).limit(500)
            if since is not None:
                query = query.where(s.c.stored_at >= since)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            for row in rows:
                after = row.seq
                if any(subject_matches(p, row.subject) for p in consumer.subjects):
                    yield _delivery(row, delivered=1, settle=None)

    async def position(self, consumer: str) -> int:
        """The consumer's acknowledged stream position (for lag and tests)."""
        return (await self._state(consumer)).committed

    async def last_seq(self) -> int:
        async with self._engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.func.max(event_stream.c.seq)))).scalar()
        return int(value or 0)

    async def reset(self, consumer: str, to_seq: int) -> None:
        """Move a durable consumer back (or forward): it next reads from `to_seq`."""
        self._states.pop(consumer, None)
        await self._save_cursor(consumer, max(to_seq - 1, 0))

    def _due_retries(self, state: _ConsumerState, limit: int) -> list[Delivery]:
        now = time.monotonic()
        due = [d for at, d in state.retries if at <= now][:limit]
        if due:
            taken = {id(d) for d in due}
            state.retries = [(at, d) for at, d in state.retries if id(d) not in taken]
        return list(due)

    def _next_retry_in(self, state: _ConsumerState) -> float:
        if not state.retries:
            return 1.0
        return max(min(at for at, _ in state.retries) - time.monotonic(), 0.0)

    async def _new(self, consumer: ConsumerSpec, state: _ConsumerState, limit: int) -> list[Delivery]:
        s = event_stream
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(s).where(s.c.seq > state.position).order_by(s.c.seq).limit(limit * 4))
            ).all()
        out: list[Delivery] = []
        for row in rows:
            if len(out) >= limit:
                break
            state.position = row.seq
            if any(subject_matches(p, row.subject) for p in consumer.subjects):
                state.in_flight.add(row.seq)
                out.append(_delivery(row, delivered=1, settle=self._settler(consumer, state)))
            else:
                state.acked.add(row.seq)  # not this consumer's: nothing to do
        if rows and not out:
            await self._advance(consumer.name, state)
        return out

    def _settler(
        self, consumer: ConsumerSpec, state: _ConsumerState
    ) -> Callable[[SqlDelivery, float | None], Awaitable[None]]:
        async def settle(delivery: SqlDelivery, delay: float | None) -> None:
            if delay is None:
                state.in_flight.discard(delivery.stream_seq)
                state.acked.add(delivery.stream_seq)
                await self._advance(consumer.name, state)
                return
            again = SqlDelivery(
                delivery.subject,
                delivery.data,
                delivery.headers,
                delivery.stream_seq,
                delivery.delivered + 1,
                delivery.published_at,
                settle,
            )
            state.retries.append((time.monotonic() + delay, again))

        return settle

    async def _advance(self, consumer: str, state: _ConsumerState) -> None:
        """Persist the highest seq below which everything is acknowledged."""
        low = state.committed
        while low + 1 in state.acked:
            low += 1
            state.acked.discard(low)
        if low > state.committed:
            state.committed = low
            await self._save_cursor(consumer, low)

    async def _state(self, consumer: str) -> _ConsumerState:
        state = self._states.get(consumer)
        if state is None:
            c = event_consumer_cursors
            async with self._engine.connect() as conn:
                acked = (await conn.execute(sa.select(c.c.acked_seq).where(c.c.consumer == consumer))).scalar()
            state = _ConsumerState(position=int(acked or 0), committed=int(acked or 0))
            self._states[consumer] = state
        return state

    async def _save_cursor(self, consumer: str, seq: int) -> None:
        c = event_consumer_cursors
        insert = (postgresql.insert if self._pg else sqlite.insert)(c)
        async with self._engine.begin() as conn:
            await conn.execute(
                insert.values(consumer=consumer, acked_seq=seq, updated_at=self._clock.now()).on_conflict_do_update(
                    index_elements=["consumer"], set_={"acked_seq": seq, "updated_at": self._clock.now()}
                )
            )


def _delivery(
    row: sa.Row[tuple[object, ...]], *, delivered: int, settle: Callable[..., Awaitable[None]] | None
) -> SqlDelivery:
    m = row._mapping
    return SqlDelivery(
        subject=str(m["subject"]),
        data=text_to_bytes(str(m["data"])),
        headers=json.loads(str(m["headers"])),
        stream_seq=int(m["seq"]),
        delivered=delivered,
        published_at=m["stored_at"],
        _settle=settle,
    )
