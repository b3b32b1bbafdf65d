"""Writing and reading many rows in the caller's transaction, fast on PostgreSQL and portable.

On PostgreSQL rows go in with COPY (asyncpg's binary ``copy_records_to_table``) and come out
through a server-side cursor, both on the raw asyncpg connection under SQLAlchemy's, so they
share its transaction. Elsewhere (SQLite) the same calls are chunked executemany inserts and a
plain select. Rows are tuples in the order of ``columns``; the values are what the columns
hold (UUIDs, timezone-aware datetimes, integers, strings, bytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

CHUNK = 10_000


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside the transaction ``conn`` holds.

    SQLAlchemy's asyncpg adapter opens its transaction lazily, on its first statement: one is
    run here if needed, so the COPY or the cursor cannot run outside the caller's transaction."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await conn.execute(sa.text("SELECT 1"))
    if not driver.is_in_transaction():  # pragma: no cover - a guard, not a path
        raise RuntimeError("bulk operations need a transaction (use engine.begin())")
    return driver


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert ``rows`` into ``table`` in the caller's transaction; returns how many."""
    if conn.dialect.name == "postgresql":
        driver = await _driver(conn)
        counted = _Counted(rows)
        await driver.copy_records_to_table(table.name, records=counted, columns=list(columns))
        return counted.count
    count = 0
    iterator = iter(rows)
    statement = sa.insert(table)
    while chunk := list(islice(iterator, CHUNK)):
        await conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in chunk])
        count += len(chunk)
    return count


async def select_rows(
    conn: AsyncConnection, query: sa.Select[Any], *, chunk: int = CHUNK
) -> AsyncIterator[Sequence[Any]]:
    """The rows of ``query`` as tuples in chunks, in the caller's transaction. On PostgreSQL the
    values are asyncpg's (timestamptz as aware UTC datetimes, uuid as UUID), through a cursor
    so the result is never held whole; elsewhere SQLAlchemy's, after its type processing."""
    if conn.dialect.name == "postgresql":
        driver = await _driver(conn)
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        names = compiled.positiontup or []
        args = [compiled.params[name] for name in names]
        cursor = await driver.cursor(str(compiled), *args)
        while records := await cursor.fetch(chunk):
            yield records
        return
    result = await conn.stream(query)
    async for partition in result.partitions(chunk):
        yield partition


class _Counted:
    """An iterable that counts what it hands out (COPY does not say how many rows it took)."""

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self._rows = rows
        self.count = 0

    def __iter__(self) -> Any:
        for row in self._rows:
            self.count += 1
            yield row
