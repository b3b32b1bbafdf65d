"""Dead letters on SQL, in the consumer's database: what a consumer could not apply, with the
reason, until a person re-drives or drops it (ADR 0021)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.events.adapters.bytes_as_text import bytes_to_text, text_to_bytes
from kora.events.adapters.tables import dead_letters


def _text(value: str) -> str:
    return value.replace("\x00", "\\0")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: uuid.UUID
    consumer: str
    event_id: str | None
    subject: str
    stream_seq: int | None
    data: str
    reason: str
    detail: str
    deliveries: int
    status: str
    failed_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None

    def raw(self) -> bytes:
        """The message as it was delivered."""
        return text_to_bytes(self.data)

    def view(self) -> dict[str, object]:
        """What operators see (the event itself carries no PII)."""
        return {
            "id": str(self.id),
            "consumer": self.consumer,
            "event_id": self.event_id,
            "subject": self.subject,
            "stream_seq": self.stream_seq,
            "reason": self.reason,
            "detail": self.detail,
            "deliveries": self.deliveries,
            "status": self.status,
            "failed_at": self.failed_at.isoformat(),
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "resolved_by": self.resolved_by,
        }


class SqlDeadLetters:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        *,
        consumer: str,
        event_id: str | None,
        subject: str,
        stream_seq: int | None,
        data: bytes,
        reason: str,
        detail: str,
        deliveries: int,
        at: datetime,
    ) -> uuid.UUID:
        letter_id = uuid.uuid4()
        d = dead_letters
        stored = bytes_to_text(data)
        async with self._engine.begin() as conn:
            # The same message again (a replay, a redelivery): one open letter is enough. Matched
            # on the event id, or on the exact bytes when the message was not even readable.
            same = d.c.event_id == event_id if event_id is not None else d.c.data == stored
            found = await conn.execute(sa.select(d.c.id).where(d.c.consumer == consumer, same, d.c.status == "open"))
            existing = found.scalar()
            if existing is not None:
                return uuid.UUID(str(existing))
            await conn.execute(
                dead_letters.insert().values(
                    id=letter_id,
                    consumer=consumer,
                    event_id=event_id,
                    subject=subject[:128],
                    stream_seq=stream_seq,
                    data=stored,
                    reason=_text(reason)[:32],
                    detail=_text(detail)[:500],
                    deliveries=deliveries,
                    status="open",
                    failed_at=at,
                )
            )
        return letter_id

    async def find(
        self, *, consumer: str | None = None, status: str | None = "open", limit: int = 100
    ) -> list[DeadLetter]:
        d = dead_letters
        query = sa.select(d).order_by(d.c.failed_at, d.c.id).limit(limit)
        if consumer is not None:
            query = query.where(d.c.consumer == consumer)
        if status is not None:
            query = query.where(d.c.status == status)
        async with self._engine.connect() as conn:
            return [DeadLetter(**row._mapping) for row in await conn.execute(query)]

    async def get(self, letter_id: uuid.UUID) -> DeadLetter | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(dead_letters).where(dead_letters.c.id == letter_id))).first()
        return None if row is None else DeadLetter(**row._mapping)

    async def resolve(self, letter_id: uuid.UUID, *, status: str, by: str, at: datetime) -> bool:
        """Close an open letter as `retried` or `dropped`; False when it was not open."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                dead_letters.update()
                .where(dead_letters.c.id == letter_id, dead_letters.c.status == "open")
                .values(status=status, resolved_at=at, resolved_by=by[:64])
            )
        return bool(result.rowcount)

    async def note_failure(self, letter_id: uuid.UUID, *, reason: str, detail: str) -> None:
        """A re-drive that failed again: the letter stays open with the new reason."""
        async with self._engine.begin() as conn:
            await conn.execute(
                dead_letters.update()
                .where(dead_letters.c.id == letter_id)
                .values(reason=_text(reason)[:32], detail=_text(detail)[:500], deliveries=dead_letters.c.deliveries + 1)
            )

    async def open_counts(self) -> dict[str, int]:
        d = dead_letters
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(d.c.consumer, sa.func.count()).where(d.c.status == "open").group_by(d.c.consumer)
            )
            return {str(r[0]): int(r[1]) for r in rows}
