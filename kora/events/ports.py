"""Ports of the events module: the bus (publishing side and consuming side)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One event to publish: `msg_id` is the event id (the bus drops a duplicate publish)."""

    subject: str
    msg_id: str
    data: bytes
    headers: Mapping[str, str]


class PublishError(Exception):
    """The bus did not confirm a publish; the relay keeps the event and tries again."""


class EventBus(Protocol):
    """The publishing side. Only the relay publishes."""

    async def publish(self, messages: Sequence[OutgoingMessage]) -> list[PublishError | None]:
        """Publish in order and wait for the bus's acknowledgements; one result per message,
        None when the bus stored it (or had it already)."""
        ...


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer: its name, the subjects it reads, and its redelivery policy."""

    name: str
    subjects: tuple[str, ...]
    max_deliver: int = 5
    backoff_seconds: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)

    def backoff(self, delivered: int) -> float:
        """The wait before redelivery number `delivered` + 1."""
        steps = self.backoff_seconds or (1.0,)
        return steps[min(delivered, len(steps)) - 1] if delivered > 0 else steps[0]


class Delivery(Protocol):
    """One message handed to a consumer, with explicit acknowledgement."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def stream_seq(self) -> int: ...

    @property
    def delivered(self) -> int:
        """How many times this message has been delivered to this consumer, this time included."""
        ...

    @property
    def published_at(self) -> datetime | None: ...

    async def ack(self) -> None: ...

    async def nak(self, delay_seconds: float) -> None:
        """Redeliver after `delay_seconds`."""
        ...


class EventSource(Protocol):
    """The consuming side of the bus."""

    async def fetch(self, consumer: ConsumerSpec, *, batch: int, wait_seconds: float) -> list[Delivery]:
        """Up to `batch` messages for the durable consumer (waiting at most `wait_seconds`
        for the first), redeliveries whose backoff is over included."""
        ...

    def replay(
        self, consumer: ConsumerSpec, *, from_seq: int | None = None, since: datetime | None = None
    ) -> AsyncIterator[Delivery]:
        """The consumer's subjects from a stream sequence or a time to the current end, outside
        its durable position (acks and naks are no-ops)."""
        ...

    async def publish_dead_letter(self, consumer: str, data: bytes, headers: Mapping[str, str]) -> None:
        """Announce a dead letter on the consumer's dead-letter subject."""
        ...
