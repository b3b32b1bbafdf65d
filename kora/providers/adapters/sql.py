"""SqlWebhookReceipts: the webhook receipts port on the shared database (PostgreSQL or SQLite).

Each call is its own short transaction on the engine: a receipt is written after the event was
applied (by the payments module, in its own transaction), so a crash in between leaves no
receipt and the provider's retry applies it again — a no-op, since applying is idempotent.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.providers.adapters.tables import webhook_receipts
from kora.providers.webhooks import WebhookReceipt


class SqlWebhookReceipts:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"

    async def find(self, provider: str, event_id: str) -> WebhookReceipt | None:
        query = sa.select(webhook_receipts).where(
            webhook_receipts.c.provider == provider, webhook_receipts.c.event_id == event_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return WebhookReceipt(
            provider=row["provider"],
            event_id=row["event_id"],
            signature=row["signature"],
            received_at=row["received_at"],
            outcome=row["outcome"],
            payment_id=row["payment_id"],
        )

    async def add(self, receipt: WebhookReceipt) -> bool:
        insert = (postgresql.insert if self._pg else sqlite.insert)(webhook_receipts)
        statement = (
            insert.values(
                provider=receipt.provider,
                event_id=receipt.event_id,
                signature=receipt.signature,
                payment_id=receipt.payment_id,
                outcome=receipt.outcome,
                received_at=receipt.received_at,
            )
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(webhook_receipts.c.event_id)
        )
        async with self._engine.begin() as conn:
            inserted = (await conn.execute(statement)).first()
        return inserted is not None

    async def purge(self, *, received_before: datetime) -> int:
        statement = sa.delete(webhook_receipts).where(webhook_receipts.c.received_at < received_before)
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount or 0)
