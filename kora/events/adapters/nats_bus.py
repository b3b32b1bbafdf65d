"""The production bus: NATS JetStream, behind the same two ports as the embedded `SqlStreamBus`.

- `publish` pipelines a batch (every message on the wire in order, then every PubAck awaited
  together) and sends the event id as `Nats-Msg-Id`, so a re-published event inside the
  stream's duplicate window is stored once.
- `fetch` reads a durable pull consumer with explicit acks; `nak(delay)` asks JetStream to
  redeliver later (the runtime computes the backoff), `max_deliver` caps the deliveries.
- `replay` reads from a sequence or a time through a short-lived consumer, up to the last
  sequence the stream had when the replay began, outside every durable position.

nats-server 2.9 allows one filter subject per consumer. A consumer of several subjects gets
their narrowest common wildcard (e.g. `kora.events.>`) and this adapter acknowledges and drops
what matches the wildcard but none of its subjects, so callers see exactly the subjects they
asked for, as with the embedded bus.

Streams are created by `ensure_stream` (an admin, `kora events setup`), never while publishing,
so the relay and the consumers run with least-privilege users (deploy/nats/nats.conf).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from kora.events.adapters.sql_bus import subject_matches
from kora.events.domain import DLQ_PREFIX, SUBJECT_PREFIX, dlq_subject_for
from kora.events.ports import ConsumerSpec, Delivery, OutgoingMessage, PublishError

DEFAULT_STREAM = "KORA_EVENTS"
DEFAULT_DLQ_STREAM = "KORA_DLQ"
_DAY = 86_400.0
_MAX_IN_FLIGHT = 16_384  # unacknowledged publishes per chunk
T = TypeVar("T")


class BusUnavailable(Exception):
    """NATS could not be reached, refused the request, or did not answer in time."""


class NotFoundOnBus(BusUnavailable):
    """The stream or consumer asked about does not exist (yet): `kora events setup` creates
    the streams, a consumer's first fetch creates its durable."""


@dataclass(slots=True)
class NatsDelivery:
    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream_seq: int
    delivered: int
    published_at: datetime | None
    _msg: Msg | None = None  # None: a replayed message, whose ack and nak do nothing

    async def ack(self) -> None:
        if self._msg is not None:
            await _settle(self._msg.ack())

    async def nak(self, delay_seconds: float) -> None:
        if self._msg is not None:
            await _settle(self._msg.nak(delay=max(delay_seconds, 0.0)))


async def _settle(call: Awaitable[None]) -> None:
    try:
        await call
    except nats.errors.Error as exc:
        raise BusUnavailable(f"acknowledgement not sent: {type(exc).__name__}") from exc


def consumer_filter(subjects: Sequence[str]) -> str:
    """One filter subject covering all `subjects` (nats-server 2.9 takes one per consumer):
    the subject itself, else `*` where same-length subjects differ, else the common leading
    tokens followed by `>` — never wider than `kora.events.>`."""
    if not subjects:
        return f"{SUBJECT_PREFIX}.>"
    if len(set(subjects)) == 1:
        return subjects[0]
    split = [s.split(".") for s in subjects]
    if len({len(t) for t in split}) == 1 and not any(">" in t for t in split):
        merged = [t[0] if len(set(t)) == 1 else "*" for t in zip(*split, strict=True)]
    else:
        common: list[str] = []
        for tokens in zip(*split, strict=False):
            if len(set(tokens)) != 1 or tokens[0] in ("*", ">"):
                break
            common.append(tokens[0])
        merged = [*common, ">"]
    root = SUBJECT_PREFIX.split(".")
    if merged[: len(root)] != root or len(merged) <= len(root):
        return f"{SUBJECT_PREFIX}.>"
    return ".".join(merged)


class NatsEventBus:
    """EventBus and EventSource on a JetStream stream (`KORA_EVENTS`) and its dead-letter
    stream (`KORA_DLQ`). `namespace` prefixes every subject on the wire (tests share one
    server that way); deliveries carry the subject without it."""

    def __init__(
        self,
        nc: Client,
        *,
        stream: str = DEFAULT_STREAM,
        dlq_stream: str = DEFAULT_DLQ_STREAM,
        namespace: str = "",
        ack_timeout: float = 10.0,
        api_timeout: float = 5.0,
        ack_wait: float = 30.0,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=api_timeout, publish_async_max_pending=_MAX_IN_FLIGHT)
        self.stream = stream
        self.dlq_stream = dlq_stream
        self._prefix = f"{namespace}." if namespace else ""
        self._ack_timeout = ack_timeout
        self._ack_wait = ack_wait
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._denied = ""  # the last permission violation the server reported, and when
        self._denied_at = 0.0

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        stream: str = DEFAULT_STREAM,
        dlq_stream: str = DEFAULT_DLQ_STREAM,
        namespace: str = "",
        name: str = "kora",
        ack_timeout: float = 10.0,
        api_timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> NatsEventBus:
        """Connect, giving up with BusUnavailable after `connect_timeout` (a wrong password or an
        absent server); once connected, nats-py reconnects on its own, forever. Each user gets
        its own inbox prefix `_INBOX.<user>` so the server can let it subscribe to its replies only."""
        holder: list[NatsEventBus] = []
        seen: list[str] = []

        async def on_error(exc: Exception) -> None:
            seen[:] = [f"{type(exc).__name__}: {exc}"[:200]]
            if holder and "permissions violation" in str(exc).lower():
                holder[0]._denied, holder[0]._denied_at = str(exc)[:300], time.monotonic()

        nc = Client()
        try:
            await asyncio.wait_for(
                nc.connect(
                    url,
                    user=user,
                    password=password,
                    name=name,
                    inbox_prefix=f"_INBOX.{user.replace('.', '_')}" if user else "_INBOX",
                    error_cb=on_error,
                    connect_timeout=2,  # per attempt; the whole connect is bounded by wait_for
                    reconnect_time_wait=1,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                ),
                timeout=connect_timeout,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            with contextlib.suppress(nats.errors.Error):
                await nc.close()
            why = seen[0] if seen else type(exc).__name__
            raise BusUnavailable(f"cannot connect to NATS: {why}") from exc
        bus = cls(
            nc,
            stream=stream,
            dlq_stream=dlq_stream,
            namespace=namespace,
            ack_timeout=ack_timeout,
            api_timeout=api_timeout,
        )
        holder.append(bus)
        return bus

    async def close(self) -> None:
        """Send what is buffered (acks included), then disconnect. Not `drain()`: it waits up to
        30 s for a pull subscription whose lingering request the server still holds."""
        self._subs.clear()
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.flush(timeout=2)
        with contextlib.suppress(nats.errors.Error):
            await self._nc.close()

    # -- administration -----------------------------------------------------------------------
    async def ensure_stream(self, *, max_age_days: float = 30.0, dlq_max_age_days: float = 90.0) -> None:
        """Create or update both streams (an admin's job: publishers and consumers cannot)."""
        await self._ensure(
            api.StreamConfig(
                name=self.stream,
                subjects=[self._wire(f"{SUBJECT_PREFIX}.>")],
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS,
                discard=api.DiscardPolicy.OLD,
                max_age=max_age_days * _DAY,
                duplicate_window=600.0,
            )
        )
        await self._ensure(
            api.StreamConfig(
                name=self.dlq_stream,
                subjects=[self._wire(f"{DLQ_PREFIX}.>")],
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS,
                max_age=dlq_max_age_days * _DAY,
                duplicate_window=600.0,
            )
        )

    async def delete_streams(self) -> None:
        """Remove both streams (tests and teardown)."""
        for name in (self.stream, self.dlq_stream):
            with contextlib.suppress(NotFoundOnBus):
                await self._call(self._js.delete_stream(name))

    async def _ensure(self, config: api.StreamConfig) -> None:
        assert config.name is not None
        try:
            await self._call(self._js.stream_info(config.name))
        except NotFoundOnBus:
            await self._call(self._js.add_stream(config))
            return
        await self._call(self._js.update_stream(config))

    async def stream_last_seq(self) -> int:
        info = await self._call(self._js.stream_info(self.stream))
        return int(info.state.last_seq)

    async def consumer_lag(self, consumer: str) -> int:
        """Messages the durable consumer has not acknowledged yet: not yet delivered plus in flight."""
        info = await self._call(self._js.consumer_info(self.stream, consumer))
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    # -- publishing ---------------------------------------------------------------------------
    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[PublishError | None]:
        """Every message of a chunk goes on the wire in order before any ack is awaited; the
        acks are then awaited together (at most `ack_timeout`). A failed or unanswered message
        gets a PublishError; the relay publishes it again and JetStream drops what it already has.

        Pipelining means a message can be stored while an earlier one of the batch timed out;
        the relay's retry then stores the earlier one after it (order is kept on the wire, not
        across a partial failure)."""
        results: list[PublishError | None] = []
        for start in range(0, len(messages), _MAX_IN_FLIGHT):
            results.extend(await self._publish_chunk(messages[start : start + _MAX_IN_FLIGHT]))
        return results

    async def _publish_chunk(self, messages: Sequence[OutgoingMessage]) -> list[PublishError | None]:
        results: list[PublishError | None] = [None] * len(messages)
        pending: list[tuple[int, asyncio.Future[api.PubAck]]] = []
        for i, message in enumerate(messages):
            headers = {**message.headers, "Nats-Msg-Id": message.msg_id}
            try:
                # wait_stall=None: below _MAX_IN_FLIGHT the call never waits, so the whole chunk
                # is buffered and flushed in a few writes instead of one write per message.
                future = await self._js.publish_async(
                    self._wire(message.subject), message.data, wait_stall=None, stream=self.stream, headers=headers
                )
            except (nats.errors.Error, OSError) as exc:
                error = PublishError(f"publish not sent: {type(exc).__name__}")
                results[i:] = [error] * (len(messages) - i)
                break
            pending.append((i, future))
        if pending:
            await asyncio.wait([f for _, f in pending], timeout=self._ack_timeout)
        for i, future in pending:
            if not future.done():
                future.cancel()
                results[i] = PublishError(self._explain("no acknowledgement in time"))
            elif future.cancelled():
                results[i] = PublishError("publish cancelled")
            elif (refused := future.exception()) is not None:
                results[i] = PublishError(f"publish refused: {type(refused).__name__}: {refused}"[:300])
        return results

    async def publish_dead_letter(self, consumer: str, data: bytes, headers: Mapping[str, str]) -> None:
        try:
            await self._js.publish(
                self._wire(dlq_subject_for(consumer)),
                data,
                timeout=self._ack_timeout,
                stream=self.dlq_stream,
                headers=dict(headers),
            )
        except TimeoutError as exc:
            raise PublishError(self._explain("dead letter not acknowledged")) from exc
        except nats.errors.Error as exc:
            raise PublishError(f"dead letter refused: {type(exc).__name__}: {exc}"[:300]) from exc

    # -- consuming ----------------------------------------------------------------------------
    async def fetch(self, consumer: ConsumerSpec, *, batch: int, wait_seconds: float) -> list[Delivery]:
        sub = await self._durable(consumer)
        deadline = time.monotonic() + wait_seconds
        out: list[Delivery] = []
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=max(deadline - time.monotonic(), 0.05))
            except TimeoutError:  # nats-py raises both its own and asyncio's
                msgs = []
            except nats.errors.Error as exc:
                self._subs.pop(consumer.name, None)
                raise BusUnavailable(self._explain(f"fetch failed: {type(exc).__name__}")) from exc
            for msg in msgs:
                delivery = self._delivery(msg, settle=True)
                if any(subject_matches(p, delivery.subject) for p in consumer.subjects):
                    out.append(delivery)
                else:  # inside the consumer's wildcard, not one of its subjects
                    await delivery.ack()
            if out or time.monotonic() >= deadline:
                return out

    async def replay(
        self, consumer: ConsumerSpec, *, from_seq: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[Delivery]:
        end = await self.stream_last_seq()
        if end == 0 or (from_seq is not None and from_seq > end):
            return
        config = api.ConsumerConfig(
            name=self._nc._nuid.next().decode(),
            filter_subject=self._wire(consumer_filter(consumer.subjects)),
            ack_policy=api.AckPolicy.ALL,
            max_deliver=1,
            mem_storage=True,
            inactive_threshold=60.0,
        )
        if from_seq is not None:
            config.deliver_policy, config.opt_start_seq = api.DeliverPolicy.BY_START_SEQUENCE, from_seq
        elif since is not None:
            config.deliver_policy, config.opt_start_time = api.DeliverPolicy.BY_START_TIME, since
        info = await self._call(self._js.add_consumer(self.stream, config))
        assert config.name is not None
        sub = await self._js.pull_subscribe_bind(consumer=config.name, stream=self.stream)
        try:
            if not info.num_pending:
                return
            while True:
                try:
                    msgs = await sub.fetch(500, timeout=self._ack_timeout)
                except TimeoutError:  # nats-py raises both its own and asyncio's
                    return
                except nats.errors.Error as exc:
                    raise BusUnavailable(f"replay failed: {type(exc).__name__}") from exc
                await msgs[-1].ack()  # AckAll: everything up to here
                for msg in msgs:
                    meta = msg.metadata
                    if meta.sequence.stream > end:
                        return
                    delivery = self._delivery(msg, settle=False)
                    if any(subject_matches(p, delivery.subject) for p in consumer.subjects):
                        yield delivery
                    if meta.sequence.stream == end or meta.num_pending == 0:
                        return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            with contextlib.suppress(nats.errors.Error):
                await self._js.delete_consumer(self.stream, config.name)

    async def _durable(self, consumer: ConsumerSpec) -> JetStreamContext.PullSubscription:
        """The durable consumer's pull subscription, creating the consumer (or updating its
        delivery limits) the first time this process reads it."""
        sub = self._subs.get(consumer.name)
        if sub is not None:
            return sub
        config = api.ConsumerConfig(
            name=consumer.name,
            durable_name=consumer.name,
            filter_subject=self._wire(consumer_filter(consumer.subjects)),
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            # One delivery more than the runtime's own limit: a message whose handling crashed the
            # process every time still comes back once more, and the runtime parks it (it
            # dead-letters at `delivered >= spec.max_deliver`) instead of JetStream dropping it.
            max_deliver=consumer.max_deliver + 1,
        )
        try:
            existing = await self._call(self._js.consumer_info(self.stream, consumer.name))
        except NotFoundOnBus:
            existing = None
        if existing is None or _differs(existing.config, config):
            await self._call(self._js.add_consumer(self.stream, config))
        sub = await self._js.pull_subscribe_bind(durable=consumer.name, stream=self.stream)
        self._subs[consumer.name] = sub
        return sub

    def _delivery(self, msg: Msg, *, settle: bool) -> NatsDelivery:
        meta = msg.metadata
        return NatsDelivery(
            subject=self._unwire(msg.subject),
            data=msg.data,
            headers={k: v for k, v in (msg.headers or {}).items() if k != "Nats-Expected-Stream"},
            stream_seq=meta.sequence.stream,
            delivered=meta.num_delivered,
            published_at=meta.timestamp,
            _msg=msg if settle else None,
        )

    async def _call(self, call: Awaitable[T]) -> T:
        """Await a JetStream API call, translating its errors (NotFoundOnBus, BusUnavailable)."""
        try:
            return await call
        except nats.js.errors.NotFoundError as exc:
            raise NotFoundOnBus(f"{exc.description or 'not found'}"[:300]) from exc
        except TimeoutError as exc:
            raise BusUnavailable(self._explain("JetStream did not answer")) from exc
        except nats.errors.Error as exc:
            raise BusUnavailable(f"JetStream refused: {type(exc).__name__}: {exc}"[:300]) from exc

    def _explain(self, what: str) -> str:
        """A timeout right after the server refused a subject is that refusal: say so."""
        if self._denied and time.monotonic() - self._denied_at < 60.0:
            return f"{what} ({self._denied})"
        return what

    def _wire(self, subject: str) -> str:
        return self._prefix + subject

    def _unwire(self, subject: str) -> str:
        return subject[len(self._prefix) :] if self._prefix and subject.startswith(self._prefix) else subject


def _differs(have: api.ConsumerConfig, want: api.ConsumerConfig) -> bool:
    return (
        have.filter_subject != want.filter_subject
        or have.max_deliver != want.max_deliver
        or have.ack_wait != want.ack_wait
        or have.ack_policy != want.ack_policy
    )
