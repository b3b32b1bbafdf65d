"""Connecting to the configured bus, for every process that runs part of the pipeline (the
core's API, relay and workers, and the reconciliation worker): the embedded stream in a
database, or NATS JetStream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.adapters.sql_bus import SqlStreamBus
from kora.events.ports import EventBus, EventSource
from kora.kernel import Clock

BUS_KINDS = ("inprocess", "nats")


class Bus(EventBus, EventSource, Protocol):
    """Both sides of the bus, as one adapter provides them."""


@dataclass(frozen=True, slots=True)
class NatsConnection:
    """Where JetStream is and who this process is there (its least-privilege user)."""

    url: str
    user: str | None
    password: str | None
    stream: str
    dlq_stream: str
    namespace: str = ""


async def connect_bus(
    kind: str, *, stream_engine: AsyncEngine, clock: Clock, nats: NatsConnection, name: str = "kora"
) -> Bus:
    """`inprocess`: the embedded stream, a table of `stream_engine`'s database (the core's);
    `nats`: JetStream. Raises ValueError for another kind."""
    if kind == "inprocess":
        return SqlStreamBus(stream_engine, clock)
    if kind != "nats":
        raise ValueError(f"unknown bus {kind!r}: one of {', '.join(BUS_KINDS)}")
    from kora.events.adapters.nats_bus import NatsEventBus

    bus: Bus = await NatsEventBus.connect(
        nats.url,
        user=nats.user,
        password=nats.password,
        stream=nats.stream,
        dlq_stream=nats.dlq_stream,
        namespace=nats.namespace,
        name=name,
    )
    return bus
