"""The outbox on SQL: written in the producer's transaction, read and stamped by the relay."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import uuid6
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events.adapters.tables import event_outbox, event_outbox_partitions
from kora.events.domain import PRODUCER, DomainEvent, Envelope, Origin
from kora.events.signing import EventSigner
from kora.platform.db import UtcDateTime


def envelope_for(event: DomainEvent, origin: Origin, signer: EventSigner, *, producer: str = PRODUCER) -> Envelope:
    return signed_envelope(event, origin, signer, producer=producer)[0]


def signed_envelope(
    event: DomainEvent, origin: Origin, signer: EventSigner, *, producer: str = PRODUCER
) -> tuple[Envelope, bytes]:
    envelope = Envelope(
        id=uuid6.uuid7(),
        type=event.type,
        version=event.version,
        occurred_at=event.occurred_at,
        producer=producer,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        correlation_id=origin.correlation_id,
        trace=origin.trace,
        payload=event.payload,
        key_id=signer.key_id,
    )
    return signer.sign_to_json(envelope)


async def write_outbox(
    conn: AsyncConnection,
    events: Sequence[tuple[DomainEvent, Origin]],
    signer: EventSigner,
    *,
    at: datetime,
    producer: str = PRODUCER,
) -> list[Envelope]:
    """Envelope, sign and insert the events, in the caller's transaction (one statement).
    Any database with an `event_outbox` of these columns will do: the reconciliation service
    writes its own (`producer` kora-reconciliation, its own key)."""
    if not events:
        return []
    signed = [signed_envelope(event, origin, signer, producer=producer) for event, origin in events]
    await conn.execute(
        event_outbox.insert(),
        [
            {
                "event_id": e.id,
                "partition": e.partition,
                "aggregate_id": e.aggregate_id,
                "type": e.type,
                "version": e.version,
                "subject": e.subject,
                "envelope": data.decode("utf-8"),
                "headers": json.dumps(message_headers(e), separators=(",", ":")),
                "created_at": at,
            }
            for e, data in signed
        ],
    )
    return [e for e, _ in signed]


def message_headers(envelope: Envelope) -> dict[str, str]:
    """The bus message's headers: the event id doubles as the de-duplication id
    (`Nats-Msg-Id`), and a broker or a tracing tool can route and trace without parsing."""
    headers = {
        "Nats-Msg-Id": str(envelope.id),
        "Kora-Event-Type": envelope.type,
        "Kora-Event-Version": str(envelope.version),
    }
    if envelope.correlation_id:
        headers["Kora-Correlation-Id"] = envelope.correlation_id
    headers.update(envelope.trace)
    return headers


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    event_id: uuid.UUID
    aggregate_id: str
    subject: str
    envelope: str
    headers: str
    attempts: int


class SqlOutboxReader:
    """The relay's side of the outbox, on one connection in one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    async def claim_partitions(self, limit: int) -> list[int]:
        """Lock up to `limit` partitions that have unpublished events and that no other relay
        holds (SKIP LOCKED), for this transaction. SQLite has one writer at a time: every
        partition is this relay's."""
        p, o = event_outbox_partitions, event_outbox
        waiting = sa.exists().where(o.c.partition == p.c.partition, o.c.published_at.is_(None))
        query = sa.select(p.c.partition).where(waiting).order_by(sa.func.random()).limit(limit)
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        return list((await self._conn.execute(query)).scalars())

    async def unpublished(self, partitions: Sequence[int], limit: int) -> list[OutboxRow]:
        o = event_outbox
        rows = await self._conn.execute(
            sa.select(o.c.seq, o.c.event_id, o.c.aggregate_id, o.c.subject, o.c.envelope, o.c.headers, o.c.attempts)
            .where(o.c.published_at.is_(None), o.c.partition.in_(list(partitions)))
            .order_by(o.c.seq)
            .limit(limit)
        )
        return [
            OutboxRow(r.seq, r.event_id, r.aggregate_id, r.subject, r.envelope, r.headers, r.attempts) for r in rows
        ]

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None:
        if not seqs:
            return
        o = event_outbox
        # One array parameter on PostgreSQL rather than an IN list of a thousand.
        which = o.c.seq == sa.any_(sa.bindparam("seqs", type_=ARRAY(sa.BigInteger))) if self._pg else o.c.seq.in_(seqs)
        await self._conn.execute(o.update().where(which).values(published_at=at, last_error=None), {"seqs": list(seqs)})

    async def mark_failed(self, failures: Sequence[tuple[int, str]]) -> None:
        for seq, error in failures:
            await self._conn.execute(
                event_outbox.update()
                .where(event_outbox.c.seq == seq)
                .values(attempts=event_outbox.c.attempts + 1, last_error=error[:200])
            )

    async def backlog(self, now: datetime) -> tuple[int, float]:
        """(unpublished events, age in seconds of the oldest one)."""
        o = event_outbox
        row = (
            await self._conn.execute(
                sa.select(sa.func.count(), sa.func.min(o.c.created_at, type_=UtcDateTime)).where(
                    o.c.published_at.is_(None)
                )
            )
        ).one()
        count, oldest = int(row[0]), row[1]
        return count, (now - oldest).total_seconds() if oldest is not None else 0.0

    async def purge_published(self, before: datetime, limit: int) -> int:
        """Housekeeping: drop published rows older than `before` (the stream keeps them)."""
        o = event_outbox
        doomed = sa.select(o.c.seq).where(o.c.published_at.is_not(None), o.c.published_at < before).limit(limit)
        result = await self._conn.execute(o.delete().where(o.c.seq.in_(doomed.scalar_subquery())))
        return int(result.rowcount or 0)
