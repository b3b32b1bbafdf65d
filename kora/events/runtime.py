"""The consumer runtime: at-least-once delivery in, exactly-once effect out (ADR 0018).

For each delivery: parse the envelope, verify its signature, check it against its contract,
then in ONE transaction of the consumer's database record the event id in `processed_events`
and apply the effect. A redelivered or replayed event finds its id there and changes nothing.
What can never succeed (malformed, unsigned, forged, unknown contract) goes straight to the
dead-letter queue with its reason; a handler failure is retried with backoff, and after
`max_deliver` deliveries it is parked there too. Dead letters can be re-driven or dropped.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from loguru import logger
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.events.adapters.dead_letters import DeadLetter, SqlDeadLetters
from kora.events.adapters.tables import processed_events
from kora.events.contracts import validate_envelope
from kora.events.domain import Envelope, EventError, envelope_from_json
from kora.events.ports import ConsumerSpec, Delivery, EventSource
from kora.events.relay import sleep_or_stop
from kora.events.signing import EventVerifier
from kora.kernel import Clock
from kora.observability import correlation_scope, extract_context, get_tracer
from kora.observability.event_metrics import EventMetrics

_tracer = get_tracer("kora.events")

DEAD_LETTER_REASON_HEADER = "Kora-Dead-Letter-Reason"
DEAD_LETTER_CONSUMER_HEADER = "Kora-Dead-Letter-Consumer"


class EventHandler(Protocol):
    """A consumer's effect. `handle` runs inside the transaction that also records the event as
    processed: it writes with `conn` and never commits; raising rolls both back."""

    @property
    def spec(self) -> ConsumerSpec: ...

    @property
    def handles(self) -> frozenset[tuple[str, int]]:
        """The (type, version) contracts this consumer applies; others are acknowledged and skipped."""
        ...

    async def handle(self, event: Envelope, conn: AsyncConnection) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    word: str  # applied | duplicate | skipped | retried | dead_lettered
    detail: str = ""


class ConsumerRunner:
    def __init__(
        self,
        handler: EventHandler,
        *,
        source: EventSource,
        engine: AsyncEngine,
        verifier: EventVerifier,
        clock: Clock,
        dead_letters: SqlDeadLetters,
        metrics: EventMetrics | None = None,
    ) -> None:
        self.handler = handler
        self._source = source
        self._engine = engine
        self._verifier = verifier
        self._clock = clock
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._pg = engine.dialect.name == "postgresql"

    @property
    def name(self) -> str:
        return self.handler.spec.name

    async def run(self, stop: asyncio.Event, *, batch: int = 100, wait_seconds: float = 1.0) -> None:
        """Fetch and handle until `stop` is set. A bus outage is logged and retried."""
        while not stop.is_set():
            try:
                deliveries = await self._source.fetch(self.handler.spec, batch=batch, wait_seconds=wait_seconds)
            except Exception as exc:
                logger.opt(exception=exc).warning("event fetch failed", consumer=self.name)
                await sleep_or_stop(stop, 1.0)
                continue
            try:
                await self.process_batch(deliveries)
            except Exception as exc:  # never let one batch kill the consumer: unacked, it comes back
                logger.opt(exception=exc).error("event batch failed; it will be redelivered", consumer=self.name)
                await sleep_or_stop(stop, 1.0)

    async def process(self, delivery: Delivery, *, last_attempt: bool = False) -> Outcome:
        """Handle one delivery and settle it (ack, or nak with backoff). With `last_attempt`
        (a replay, whose deliveries are not redelivered) a failing effect is dead-lettered at once."""
        started = time.perf_counter()
        outcome = await self._process(delivery, last_attempt=last_attempt)
        await self._settle(delivery, outcome)
        if self._metrics is not None:
            self._metrics.consumer_outcome(self.name, outcome.word, time.perf_counter() - started)
        return outcome

    async def process_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Handle a fetched batch and settle each delivery. The events that pass the checks are
        applied together, in one transaction (one commit for the batch); if any effect fails,
        each is handled alone, so one poison event never holds the others back."""
        if len(deliveries) < 2:
            return [await self.process(d) for d in deliveries]
        started = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        ready: list[tuple[int, Envelope]] = []
        for i, delivery in enumerate(deliveries):
            checked = await self._check(delivery)
            if isinstance(checked, Outcome):
                outcomes[i] = checked
            else:
                ready.append((i, checked))
        try:
            applied = await self._apply_many([(deliveries[i], envelope) for i, envelope in ready])
        except Exception as exc:
            logger.warning("batch effect failed; applying one by one", consumer=self.name, error=type(exc).__name__)
            for i, envelope in ready:
                outcomes[i] = await self._apply_one(deliveries[i], envelope)
        else:
            for i, envelope in ready:
                first = envelope.id in applied
                applied.discard(envelope.id)  # a second copy in the same batch is a duplicate
                outcomes[i] = Outcome("applied" if first else "duplicate")
                if first and self._metrics is not None:
                    self._metrics.effect_lag(self.name, (self._clock.now() - envelope.occurred_at).total_seconds())
        each = (time.perf_counter() - started) / len(deliveries)
        final: list[Outcome] = []
        for delivery, maybe in zip(deliveries, outcomes, strict=True):
            outcome = maybe or Outcome("retried", "no outcome")  # every slot is filled above
            await self._settle(delivery, outcome)
            if self._metrics is not None:
                self._metrics.consumer_outcome(self.name, outcome.word, each)
            final.append(outcome)
        return final

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        try:
            if outcome.word == "retried":
                await delivery.nak(self.handler.spec.backoff(delivery.delivered))
            else:
                await delivery.ack()
        except Exception as exc:  # the bus redelivers it; processed_events makes that harmless
            logger.warning("event settle failed", consumer=self.name, error=type(exc).__name__)

    async def _check(self, delivery: Delivery) -> Envelope | Outcome:
        """Parse, verify and check the contract: the envelope to apply, or the outcome
        (`skipped`, or `dead_lettered` for what can never succeed)."""
        try:
            envelope = envelope_from_json(delivery.data)
        except EventError as exc:
            return await self._dead_letter(delivery, None, exc.reason, exc.detail)
        if delivery.delivered > self.handler.spec.max_deliver:
            # Delivered again after its last allowed attempt: the consumer died while handling it
            # (the bus allows one delivery more than we do, for exactly this).
            return await self._dead_letter(
                delivery, envelope, "max_deliveries", f"delivered {delivery.delivered} times without an answer"
            )
        try:
            self._verifier.verify(envelope)
            if (envelope.type, envelope.version) not in self.handler.handles:
                return Outcome("skipped")
            validate_envelope(envelope)
        except EventError as exc:
            return await self._dead_letter(delivery, envelope, exc.reason, exc.detail)
        return envelope

    def _span(self, envelope: Envelope, delivery: Delivery) -> Any:
        """The consumer's span, a child of the span that recorded the event (its trace context
        travelled in the envelope, and in the message headers)."""
        parent = extract_context(dict(envelope.trace) or dict(delivery.headers))
        return _tracer.start_as_current_span(
            f"consume {envelope.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kora",
                "messaging.destination.name": delivery.subject,
                "messaging.consumer.group.name": self.name,
                "messaging.message.id": str(envelope.id),
                "kora.event.type": envelope.type,
                "kora.event.version": envelope.version,
                "kora.delivery.count": delivery.delivered,
            },
        )

    async def _process(self, delivery: Delivery, *, last_attempt: bool = False) -> Outcome:
        checked = await self._check(delivery)
        if isinstance(checked, Outcome):
            return checked
        return await self._apply_one(delivery, checked, last_attempt=last_attempt)

    async def _apply_one(self, delivery: Delivery, envelope: Envelope, *, last_attempt: bool = False) -> Outcome:
        with correlation_scope(envelope.correlation_id), self._span(envelope, delivery) as span:
            try:
                applied = await self.apply(envelope)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                detail = f"{type(exc).__name__}: {exc}"[:300]
                if last_attempt or delivery.delivered >= self.handler.spec.max_deliver:
                    return await self._dead_letter(delivery, envelope, "handler_failed", detail)
                logger.warning(
                    "event handling failed; will retry",
                    consumer=self.name,
                    event_type=envelope.type,
                    event_id=str(envelope.id),
                    delivered=delivery.delivered,
                    error=type(exc).__name__,
                )
                return Outcome("retried", detail)
        if applied and self._metrics is not None:
            self._metrics.effect_lag(self.name, (self._clock.now() - envelope.occurred_at).total_seconds())
        return Outcome("applied" if applied else "duplicate")

    async def _apply_many(self, batch: Sequence[tuple[Delivery, Envelope]]) -> set[uuid.UUID]:
        """`apply` for several events in one transaction; the ids actually applied."""
        if not batch:
            return set()
        by_id = {e.id: e for _, e in batch}  # a duplicate within the batch is applied once
        insert = (postgresql.insert if self._pg else sqlite.insert)(processed_events)
        at = self._clock.now()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert.values([{"consumer": self.name, "event_id": i, "processed_at": at} for i in by_id])
                .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
                .returning(processed_events.c.event_id)
            )
            fresh = set(result.scalars())
            for delivery, envelope in batch:
                if envelope.id in fresh and envelope is by_id[envelope.id]:
                    with correlation_scope(envelope.correlation_id), self._span(envelope, delivery):
                        await self.handler.handle(envelope, conn)
        return fresh

    async def apply(self, envelope: Envelope) -> bool:
        """Record the event as processed and apply its effect, in one transaction; False (and
        nothing done) when this consumer had already processed it."""
        insert = (postgresql.insert if self._pg else sqlite.insert)(processed_events)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert.values(
                    consumer=self.name, event_id=envelope.id, processed_at=self._clock.now()
                ).on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            )
            if not result.rowcount:
                return False
            await self.handler.handle(envelope, conn)
        return True

    async def processed_count(self) -> int:
        p = processed_events
        async with self._engine.connect() as conn:
            found = await conn.execute(sa.select(sa.func.count()).where(p.c.consumer == self.name))
            return int(found.scalar() or 0)

    async def _dead_letter(self, delivery: Delivery, envelope: Envelope | None, reason: str, detail: str) -> Outcome:
        try:
            return await self._park(delivery, envelope, reason, detail)
        except Exception as exc:  # the dead-letter store is down: keep the message, try later
            logger.opt(exception=exc).error("dead-lettering failed; will retry", consumer=self.name, reason=reason)
            return Outcome("retried", f"dead-lettering failed: {type(exc).__name__}")

    async def _park(self, delivery: Delivery, envelope: Envelope | None, reason: str, detail: str) -> Outcome:
        letter = await self._dead_letters.add(
            consumer=self.name,
            event_id=None if envelope is None else str(envelope.id),
            subject=delivery.subject,
            stream_seq=delivery.stream_seq,
            data=delivery.data,
            reason=reason,
            detail=detail,
            deliveries=delivery.delivered,
            at=self._clock.now(),
        )
        headers = {
            **{k: v for k, v in delivery.headers.items() if k.lower() != "nats-msg-id"},
            DEAD_LETTER_REASON_HEADER: reason,
            DEAD_LETTER_CONSUMER_HEADER: self.name,
            "Kora-Dead-Letter-Id": str(letter),
        }
        try:
            await self._source.publish_dead_letter(self.name, delivery.data, headers)
        except Exception as exc:  # the table row is the record; the subject is a notification
            logger.opt(exception=exc).warning("dead-letter announcement failed", consumer=self.name)
        if self._metrics is not None:
            self._metrics.dead_letter(self.name, reason)
        logger.error(
            "event dead-lettered",
            consumer=self.name,
            reason=reason,
            dead_letter_id=str(letter),
            event_id=None if envelope is None else str(envelope.id),
            stream_seq=delivery.stream_seq,
        )
        return Outcome("dead_lettered", f"{reason}: {detail}")

    async def redrive(self, letter: DeadLetter, *, by: str) -> Outcome:
        """Run a dead letter through this consumer again (after a fix): applied or duplicate
        closes it as `retried`; another failure keeps it open with the new reason."""
        try:
            envelope = envelope_from_json(letter.raw())
            self._verifier.verify(envelope)
            validate_envelope(envelope)
            if (envelope.type, envelope.version) not in self.handler.handles:
                raise EventError("not_handled", f"{self.name} does not apply {envelope.type} v{envelope.version}")
            applied = await self.apply(envelope)
        except EventError as exc:
            await self._dead_letters.note_failure(letter.id, reason=exc.reason, detail=exc.detail)
            return Outcome("dead_lettered", f"{exc.reason}: {exc.detail}")
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            await self._dead_letters.note_failure(letter.id, reason="handler_failed", detail=detail)
            return Outcome("dead_lettered", f"handler_failed: {detail}")
        await self._dead_letters.resolve(letter.id, status="retried", by=by, at=self._clock.now())
        return Outcome("applied" if applied else "duplicate")
