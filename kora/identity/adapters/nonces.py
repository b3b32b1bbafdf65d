"""SQLAlchemy Core adapter of the RequestNonceStore port (anti-replay), on the unit of work's
connection. It executes; the use case commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.identity.adapters.tables import request_nonces


class SqlRequestNonceStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, session_id: uuid.UUID, nonce: str, *, expires_at: datetime) -> bool:
        # The check and the record are one statement: the primary key decides between two
        # concurrent twins (the second waits for the first to commit, then inserts nothing).
        insert: Any = postgresql.insert if self._conn.dialect.name == "postgresql" else sqlite.insert
        result = await self._conn.execute(
            insert(request_nonces)
            .values(session_id=session_id, nonce=nonce, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[request_nonces.c.session_id, request_nonces.c.nonce])
        )
        return result.rowcount == 1

    async def add_many(self, entries: Sequence[tuple[uuid.UUID, str, datetime]]) -> set[tuple[uuid.UUID, str]]:
        if not entries:
            return set()
        insert: Any = postgresql.insert if self._conn.dialect.name == "postgresql" else sqlite.insert
        # executemany with RETURNING: SQLAlchemy batches it into multi-row INSERTs
        # ("insertmanyvalues") from one cached compiled statement, whatever the batch size.
        rows = await self._conn.execute(
            insert(request_nonces)
            .on_conflict_do_nothing(index_elements=[request_nonces.c.session_id, request_nonces.c.nonce])
            .returning(request_nonces.c.session_id, request_nonces.c.nonce),
            [{"session_id": s, "nonce": n, "expires_at": e} for s, n, e in entries],
        )
        return {(row.session_id, row.nonce) for row in rows}

    async def relax_durability(self) -> None:
        if self._conn.dialect.name == "postgresql":
            # LOCAL: for this transaction only, so the pooled connection is left as it was.
            await self._conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))

    async def purge(self, *, expired_before: datetime) -> int:
        result = await self._conn.execute(request_nonces.delete().where(request_nonces.c.expires_at < expired_before))
        return result.rowcount
