"""The review queue in the service's database: cases, comments and the audit hash chain.
Functions on a connection (the caller owns the transaction), and ``SqlAuditTrail``, the keyed
chain's appender and verifier."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.reconciliation.adapters.tables import recon_audit, recon_audit_head, recon_case_comments, recon_cases
from kora.reconciliation.domain.audit_chain import AuditRecord, ChainReport, Detail, canonical_details, seal, verify

_BATCH = 1000


async def cases_of_report(conn: AsyncConnection, report_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The report's cases by subject, locked until the transaction ends (PostgreSQL)."""
    query = sa.select(recon_cases).where(recon_cases.c.report_id == report_id).with_for_update()
    return {row["subject"]: dict(row) for row in (await conn.execute(query)).mappings()}


async def insert_case(conn: AsyncConnection, row: Mapping[str, Any]) -> None:
    await conn.execute(sa.insert(recon_cases).values(**row))


async def update_case(conn: AsyncConnection, case_id: uuid.UUID, values: Mapping[str, Any]) -> None:
    await conn.execute(sa.update(recon_cases).where(recon_cases.c.id == case_id).values(**values))


async def lock_case(conn: AsyncConnection, case_id: uuid.UUID) -> dict[str, Any] | None:
    query = sa.select(recon_cases).where(recon_cases.c.id == case_id).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else dict(row)


async def get_case(conn: AsyncConnection, case_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(recon_cases).where(recon_cases.c.id == case_id))).mappings().first()
    return None if row is None else dict(row)


@dataclass(frozen=True, slots=True)
class CaseFilter:
    statuses: frozenset[str] = frozenset()
    provider: str | None = None
    outcome: str | None = None
    report_id: uuid.UUID | None = None


async def find_cases(
    conn: AsyncConnection, where: CaseFilter, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of cases, oldest first, and how many match in all."""
    c = recon_cases
    conditions: list[sa.ColumnElement[bool]] = []
    if where.statuses:
        conditions.append(c.c.status.in_(sorted(where.statuses)))
    if where.provider is not None:
        conditions.append(c.c.provider == where.provider)
    if where.outcome is not None:
        conditions.append(c.c.outcome == where.outcome)
    if where.report_id is not None:
        conditions.append(c.c.report_id == where.report_id)
    query = sa.select(c).where(*conditions).order_by(c.c.opened_at, c.c.id).limit(limit).offset(offset)
    rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    total = (await conn.execute(sa.select(sa.func.count()).select_from(c).where(*conditions))).scalar_one()
    return rows, int(total)


async def cases_awaiting_core(conn: AsyncConnection, *, limit: int) -> list[dict[str, Any]]:
    c = recon_cases
    query = sa.select(c).where(c.c.status == "awaiting_core").order_by(c.c.opened_at, c.c.id).limit(limit)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def approved_not_posted(conn: AsyncConnection, *, limit: int) -> list[uuid.UUID]:
    """Approved corrections not posted yet, the least recently tried first (never tried: by
    approval), so ``limit`` failing ones cannot keep the others from being tried."""
    c = recon_cases
    last_tried = sa.func.coalesce(c.c.last_posting_at, c.c.decided_at)
    query = (
        sa.select(c.c.id)
        .where(c.c.status == "approved", c.c.proposal_kind.in_(["write_off", "manual_credit", "manual_debit"]))
        .order_by(last_tried, c.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def queue_by_provider(conn: AsyncConnection, statuses: Iterable[str]) -> dict[str, tuple[int, datetime]]:
    """provider -> (cases in the queue, when the oldest was opened)."""
    c = recon_cases
    query = (
        sa.select(c.c.provider, sa.func.count(), sa.func.min(c.c.opened_at, type_=c.c.opened_at.type))
        .where(c.c.status.in_(sorted(statuses)))
        .group_by(c.c.provider)
    )
    out: dict[str, tuple[int, datetime]] = {}
    for provider, count, oldest in await conn.execute(query):
        out[str(provider)] = (int(count), oldest)
    return out


async def add_comment(
    conn: AsyncConnection, case_id: uuid.UUID, *, author: str, role: str, body: str, at: datetime
) -> int:
    result = await conn.execute(
        sa.insert(recon_case_comments)
        .values(case_id=case_id, author=author, role=role, body=body, created_at=at)
        .returning(recon_case_comments.c.id)
    )
    return int(result.scalar_one())


async def comments_of(conn: AsyncConnection, case_id: uuid.UUID) -> list[dict[str, Any]]:
    cc = recon_case_comments
    query = sa.select(cc).where(cc.c.case_id == case_id).order_by(cc.c.id)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def audit_of(conn: AsyncConnection, case_id: uuid.UUID) -> list[dict[str, Any]]:
    a = recon_audit
    query = sa.select(a).where(a.c.case_id == str(case_id)).order_by(a.c.position)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


class SqlAuditTrail:
    """Appends actions to the keyed hash chain and verifies it. ``append`` runs in the caller's
    transaction: the action and its record commit together or not at all."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self._key = key

    async def append(
        self,
        conn: AsyncConnection,
        *,
        at: datetime,
        actor: str,
        role: str,
        action: str,
        case_id: uuid.UUID,
        before: str | None,
        after: str | None,
        correlation_id: str | None,
        details: Mapping[str, Detail] | None = None,
    ) -> AuditRecord:
        head = recon_audit_head
        # The head row is updated first: that takes its lock (PostgreSQL) or the write lock
        # (SQLite) before the previous hash is read, so appenders take turns.
        bumped = await conn.execute(
            sa.update(head)
            .where(head.c.id == 1)
            .values(position=head.c.position + 1)
            .returning(head.c.position, head.c.hash)
        )
        position, prev_hash = bumped.one()
        record = seal(
            self._key,
            AuditRecord(
                position=int(position),
                occurred_at=at,
                actor=actor,
                role=role,
                action=action,
                case_id=str(case_id),
                before=before,
                after=after,
                correlation_id=correlation_id,
                details=canonical_details(details),
                prev_hash=str(prev_hash),
            ),
        )
        await conn.execute(
            sa.insert(recon_audit).values(
                position=record.position,
                occurred_at=record.occurred_at,
                actor=record.actor,
                role=record.role,
                action=record.action,
                case_id=record.case_id,
                status_before=record.before,
                status_after=record.after,
                correlation_id=record.correlation_id,
                details=record.details,
                prev_hash=record.prev_hash,
                hash=record.hash,
            )
        )
        await conn.execute(sa.update(head).where(head.c.id == 1).values(hash=record.hash))
        return record

    async def verify(self, engine: AsyncEngine) -> ChainReport:
        """Recompute the whole chain, in batches, against the stored head."""
        a = recon_audit
        records: list[AuditRecord] = []
        async with engine.connect() as conn:
            head_row = (await conn.execute(sa.select(recon_audit_head.c.position, recon_audit_head.c.hash))).first()
            after = 0
            while True:
                query = sa.select(a).where(a.c.position > after).order_by(a.c.position).limit(_BATCH)
                batch = [_record(row) for row in (await conn.execute(query)).mappings()]
                if not batch:
                    break
                records += batch
                after = batch[-1].position
        head = None if head_row is None else (int(head_row[0]), str(head_row[1]))
        return verify(self._key, records, head=head)


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        position=int(row["position"]),
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        role=row["role"],
        action=row["action"],
        case_id=row["case_id"],
        before=row["status_before"],
        after=row["status_after"],
        correlation_id=row["correlation_id"],
        details=row["details"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
