"""The unit of work: one database transaction, owned by the use case that opens it.

Repositories are built on its connection; they add and flush, never commit. The use case
calls `commit()`; leaving the block without it rolls back.

A unit of work may also run inside a transaction someone else owns (`connection=`: an event
consumer's, which records the event as processed in it): it is then a SAVEPOINT, its commit
releases it, and only the owner's commit makes it durable (ADR 0024).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction


class SqlUnitOfWork:
    def __init__(
        self, engine: AsyncEngine, *, snapshot: bool = False, connection: AsyncConnection | None = None
    ) -> None:
        self._engine = engine
        self._outer = connection
        # A consistent snapshot for long reads (REPEATABLE READ on PostgreSQL); SQLite
        # transactions are already serializable.
        self._snapshot = snapshot
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None

    @property
    def connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside its `async with` block")
        return self._conn

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def __aenter__(self) -> Self:
        if self._outer is not None:
            self._conn = self._outer
            self._tx = await self._outer.begin_nested()
            return self
        self._conn = await self._engine.connect()
        if self._snapshot and self._engine.dialect.name == "postgresql":
            await self._conn.execution_options(isolation_level="REPEATABLE READ")
        self._tx = await self._conn.begin()
        return self

    async def commit(self) -> None:
        if self._tx is None:
            raise RuntimeError("no open transaction")
        await self._tx.commit()
        self._tx = None

    async def rollback(self) -> None:
        if self._tx is not None:
            await self._tx.rollback()
            self._tx = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.rollback()
        finally:
            if self._conn is not None and self._outer is None:
                await self._conn.close()
            self._conn = None
