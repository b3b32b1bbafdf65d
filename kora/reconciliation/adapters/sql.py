"""SqlReportStore: the reconciliation service's reports in its own database (SQLite or PostgreSQL)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.reconciliation.adapters.bulk import insert_rows
from kora.reconciliation.adapters.tables import recon_quarantine, recon_report_lines, recon_reports
from kora.reconciliation.service.ports import NewReport, StoredReport

_LINE_COLUMNS = (
    "report_id", "line_number", "provider_txn_id", "our_reference", "provider_parent_id", "occurred_at",
    "status", "type", "direction", "amount", "fee", "net", "currency",
)  # fmt: skip
_QUARANTINE_COLUMNS = ("report_id", "line_number", "reason", "raw")


class SqlReportStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find_by_digest(self, provider: str, digest: str) -> StoredReport | None:
        query = sa.select(recon_reports).where(recon_reports.c.provider == provider, recon_reports.c.digest == digest)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _stored(row) if row else None

    async def get(self, report_id: uuid.UUID) -> StoredReport | None:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(recon_reports).where(recon_reports.c.id == report_id))).mappings().first()
            )
        return _stored(row) if row else None

    async def quarantined(self, report_id: uuid.UUID) -> list[tuple[int, str, bytes]]:
        query = (
            sa.select(recon_quarantine.c.line_number, recon_quarantine.c.reason, recon_quarantine.c.raw)
            .where(recon_quarantine.c.report_id == report_id)
            .order_by(recon_quarantine.c.line_number)
        )
        async with self._engine.connect() as conn:
            return [(r.line_number, r.reason, r.raw) for r in await conn.execute(query)]

    async def add(self, report: NewReport) -> bool:
        header = {
            "id": report.id,
            "provider": report.provider,
            "report_day": report.report_day,
            "digest": report.digest,
            "filename": report.filename,
            "size": report.size,
            "content": report.content,
            "key_id": report.key_id,
            "imported_at": report.imported_at,
            "imported_by": report.imported_by,
            "line_count": len(report.lines),
            "quarantined_count": len(report.quarantined),
        }
        lines = (
            (
                report.id,
                line.line_number,
                line.provider_txn_id,
                line.our_reference,
                line.provider_parent_id,
                line.occurred_at,
                line.status.value,
                line.type.value,
                None if line.direction is None else line.direction.value,
                line.amount,
                line.fee,
                line.net,
                line.currency,
            )
            for line in report.lines
        )
        quarantined = ((report.id, number, reason.value, raw) for number, reason, raw in report.quarantined)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(recon_reports), [header])
                await insert_rows(conn, recon_report_lines, _LINE_COLUMNS, lines)
                await insert_rows(conn, recon_quarantine, _QUARANTINE_COLUMNS, quarantined)
        except IntegrityError:
            if await self.find_by_digest(report.provider, report.digest) is not None:
                return False
            raise
        return True


def _stored(row: Any) -> StoredReport:
    return StoredReport(
        id=row["id"],
        provider=row["provider"],
        report_day=row["report_day"],
        digest=row["digest"],
        filename=row["filename"],
        size=row["size"],
        content=row["content"],
        key_id=row["key_id"],
        imported_at=row["imported_at"],
        imported_by=row["imported_by"],
        line_count=row["line_count"],
        quarantined_count=row["quarantined_count"],
    )
