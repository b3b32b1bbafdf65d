"""The risk adapters' one rule for transactions: inside the caller's (the payment's) when a
connection is given — never committing it — else one of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def in_transaction(engine: AsyncEngine, connection: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
    if connection is not None:
        yield connection
        return
    async with engine.begin() as conn:
        yield conn
