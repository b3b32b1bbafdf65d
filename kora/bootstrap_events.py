"""The event pipeline's part of the composition root: which bus, the relay, the consumers and
their runners, replay and dead-letter operations. Built by `Kora`; nothing at import time."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.adapters.dead_letters import DeadLetter, SqlDeadLetters
from kora.events.adapters.outbox import SqlOutboxReader
from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.buses import Bus, NatsConnection, connect_bus
from kora.events.ports import ConsumerSpec, Delivery
from kora.events.relay import Relay, sleep_or_stop
from kora.events.runtime import ConsumerRunner, EventHandler, Outcome
from kora.events.signing import EventVerifier
from kora.kernel import Clock
from kora.observability.event_metrics import EventMetrics
from kora.platform.settings import ConfigurationError, Settings


class UnknownConsumer(LookupError):
    pass


class DeadLetterNotOpen(LookupError):
    pass


AuditHook = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


class EventsRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine,
        clock: Clock,
        verifier: EventVerifier,
        metrics: EventMetrics,
        handlers: Sequence[EventHandler],
        audit: AuditHook,
    ) -> None:
        if settings.events_bus not in ("inprocess", "nats"):
            raise ConfigurationError("KORA_EVENTS_BUS must be `inprocess` or `nats`")
        self._settings = settings
        self._engine = engine
        self._clock = clock
        self._verifier = verifier
        self.metrics = metrics
        self.handlers = {h.spec.name: h for h in handlers}
        self.dead_letters = SqlDeadLetters(engine)
        self._audit = audit
        self._bus: Bus | None = None
        # Jobs that run beside a consumer, in the process that runs it (e.g. the notification
        # dispatcher beside `notifications`).
        self.worker_jobs: dict[str, list[Callable[[asyncio.Event], Awaitable[None]]]] = {}
        self._lock = asyncio.Lock()

    async def bus(self) -> Bus:
        async with self._lock:
            if self._bus is None:
                self._bus = await self._connect()
            return self._bus

    async def _connect(self) -> Bus:
        s = self._settings
        nats = NatsConnection(
            s.nats_url, s.nats_user, s.nats_password, s.nats_stream, s.nats_dlq_stream, s.nats_namespace
        )
        return await connect_bus(s.events_bus, stream_engine=self._engine, clock=self._clock, nats=nats)

    async def relay(self) -> Relay:
        return Relay(
            self._engine,
            await self.bus(),
            self._clock,
            metrics=self.metrics,
            batch_size=self._settings.relay_batch_size,
            idle_seconds=self._settings.relay_idle_seconds,
        )

    async def runner(self, name: str, *, offline: bool = False) -> ConsumerRunner:
        """The runner of consumer `name`; `offline` for work that never touches the bus (a
        dead-letter re-drive reads the stored message), so the API needs no NATS user for it."""
        handler = self.handlers.get(name)
        if handler is None:
            raise UnknownConsumer(f"no consumer named {name!r}; known: {', '.join(sorted(self.handlers))}")
        return ConsumerRunner(
            handler,
            source=_OfflineSource() if offline else await self.bus(),
            engine=self._engine,
            verifier=self._verifier,
            clock=self._clock,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
        )

    async def run_consumers(self, stop: asyncio.Event, names: Sequence[str] | None = None) -> None:
        runners = [await self.runner(name) for name in (names or sorted(self.handlers))]
        tasks = [asyncio.create_task(r.run(stop), name=f"consumer-{r.name}") for r in runners]
        # Each process reports the lag of the consumers it runs (with least-privilege NATS users it
        # may read no other consumer's state).
        tasks.append(asyncio.create_task(self._refresh_gauges(stop, [r.name for r in runners]), name="event-gauges"))
        await asyncio.gather(*tasks)

    async def run_workers(self, stop: asyncio.Event, names: Sequence[str] | None = None) -> None:
        """`kora worker`: the consumers (all, or those named) and the jobs that go with them."""
        chosen = list(names or sorted(self.handlers))
        jobs = [job(stop) for name in chosen for job in self.worker_jobs.get(name, [])]
        await asyncio.gather(self.run_consumers(stop, chosen), *jobs)

    async def run_relay(self, stop: asyncio.Event) -> None:
        await (await self.relay()).run(stop)

    async def run_in_process(
        self, stop: asyncio.Event, extra: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = ()
    ) -> None:
        """The embedded default: relay and every consumer in the API process."""
        jobs = [self.run_relay(stop), self.run_workers(stop), *(job(stop) for job in extra)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.opt(exception=result).error("in-process event pipeline stopped with an error")

    async def _refresh_gauges(self, stop: asyncio.Event, names: Sequence[str], every: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.refresh_gauges(names)
            except Exception as exc:
                logger.opt(exception=exc).warning("event gauges refresh failed")
            await sleep_or_stop(stop, every)

    async def refresh_gauges(self, names: Sequence[str] | None = None) -> dict[str, int]:
        """Consumer lag (of `names`, default all) and open dead letters, per consumer."""
        bus = await self.bus()
        lags: dict[str, int] = {}
        for name in names or list(self.handlers):
            lag = await _lag(bus, name)
            if lag is not None:
                lags[name] = lag
                self.metrics.consumer_lag.labels(name).set(lag)
        counts = await self.dead_letters.open_counts()
        for name in set(self.handlers) | set(counts):
            self.metrics.dead_letters_open.labels(name).set(counts.get(name, 0))
        return lags

    async def replay(
        self, consumer: str, *, from_seq: int | None = None, since: datetime | None = None, actor: str
    ) -> dict[str, int]:
        """Re-deliver the stream to one consumer from a sequence or a time; thanks to
        processed_events, what it already applied is not applied again (ADR 0021)."""
        runner = await self.runner(consumer)
        counts: dict[str, int] = {}
        async for delivery in (await self.bus()).replay(runner.handler.spec, from_seq=from_seq, since=since):
            outcome = await runner.process(delivery, last_attempt=True)
            counts[outcome.word] = counts.get(outcome.word, 0) + 1
        await self._audit(
            actor,
            "events.replayed",
            f"consumer:{consumer}",
            {"from_seq": from_seq or 0, "since": since.isoformat() if since else "", **counts},
        )
        return counts

    async def retry_dead_letter(self, letter_id: uuid.UUID, *, actor: str) -> tuple[DeadLetter, Outcome]:
        letter = await self._open_letter(letter_id)
        runner = await self.runner(letter.consumer, offline=True)
        outcome = await runner.redrive(letter, by=actor)
        await self._audit(
            actor,
            "events.dead_letter.retried",
            f"dead_letter:{letter.id}",
            {"consumer": letter.consumer, "outcome": outcome.word, "event_id": letter.event_id or ""},
        )
        return letter, outcome

    async def drop_dead_letter(self, letter_id: uuid.UUID, *, actor: str, reason: str) -> DeadLetter:
        letter = await self._open_letter(letter_id)
        if not await self.dead_letters.resolve(letter.id, status="dropped", by=actor, at=self._clock.now()):
            raise DeadLetterNotOpen(str(letter_id))
        await self._audit(
            actor,
            "events.dead_letter.dropped",
            f"dead_letter:{letter.id}",
            {"consumer": letter.consumer, "reason": reason[:200], "event_id": letter.event_id or ""},
        )
        return letter

    async def _open_letter(self, letter_id: uuid.UUID) -> DeadLetter:
        letter = await self.dead_letters.get(letter_id)
        if letter is None or letter.status != "open":
            raise DeadLetterNotOpen(str(letter_id))
        return letter

    async def refresh_outbox_gauges(self) -> tuple[int, float]:
        """Outbox backlog and oldest unpublished age, from any process (the API's sweeper loop
        too), so the lag alert still sees a growing age when no relay is alive."""
        async with self._engine.connect() as conn:
            backlog, age = await SqlOutboxReader(conn).backlog(self._clock.now())
        self.metrics.set_outbox(backlog, age)
        return backlog, age

    async def aclose(self) -> None:
        bus, self._bus = self._bus, None
        close = getattr(bus, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


class _OfflineSource:
    """An EventSource for work that must not need the bus: any use of it is a bug."""

    async def fetch(self, consumer: ConsumerSpec, *, batch: int, wait_seconds: float) -> list[Delivery]:
        raise RuntimeError("offline runner: no bus")

    def replay(
        self, consumer: ConsumerSpec, *, from_seq: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[Delivery]:
        raise RuntimeError("offline runner: no bus")

    async def publish_dead_letter(self, consumer: str, data: bytes, headers: Mapping[str, str]) -> None:
        raise RuntimeError("offline runner: no bus")


async def _lag(bus: Bus, consumer: str) -> int | None:
    if isinstance(bus, SqlStreamBus):
        return max(await bus.last_seq() - await bus.position(consumer), 0)
    lag = getattr(bus, "consumer_lag", None)
    if lag is None:
        return None
    try:
        value = await lag(consumer)
    except Exception:
        return None
    return int(value)
