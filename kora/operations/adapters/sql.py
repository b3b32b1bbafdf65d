"""`ControlStore` on SQLAlchemy Core (SQLite and PostgreSQL), inside the caller's transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.operations.adapters.tables import operational_controls as t
from kora.operations.domain import Control, ControlKind


class ControlStorageUnavailable(RuntimeError):
    """The controls table could not be read or written."""

    code = "service_unavailable"


class SqlControlStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def all(self) -> list[Control]:
        try:
            rows = (await self._conn.execute(sa.select(t).order_by(t.c.kind, t.c.target))).mappings().all()
        except SQLAlchemyError as exc:
            raise ControlStorageUnavailable("operational controls could not be read") from exc
        return [_control(row) for row in rows]

    async def get(self, kind: ControlKind, target: str, *, for_update: bool = False) -> Control | None:
        query = sa.select(t).where(t.c.kind == kind.value, t.c.target == target)
        if for_update and self._conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await self._conn.execute(query)).mappings().first()
        return None if row is None else _control(row)

    async def put(self, control: Control) -> None:
        values = {
            "kind": control.kind.value,
            "target": control.target,
            "reason": control.reason,
            "incident": control.incident,
            "retry_after_seconds": control.retry_after_seconds,
            "set_by": control.set_by,
            "set_at": control.set_at,
        }
        insert = postgresql_insert(t) if self._conn.dialect.name == "postgresql" else sqlite_insert(t)
        updated = {k: v for k, v in values.items() if k not in ("kind", "target")}
        await self._conn.execute(
            insert.values(**values).on_conflict_do_update(index_elements=[t.c.kind, t.c.target], set_=updated)
        )

    async def remove(self, kind: ControlKind, target: str) -> bool:
        result = await self._conn.execute(sa.delete(t).where(t.c.kind == kind.value, t.c.target == target))
        return bool(result.rowcount)


def _control(row: Any) -> Control:
    return Control(
        kind=ControlKind(row["kind"]),
        target=row["target"],
        reason=row["reason"],
        incident=row["incident"],
        retry_after_seconds=row["retry_after_seconds"],
        set_by=row["set_by"],
        set_at=row["set_at"],
    )
