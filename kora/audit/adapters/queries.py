"""Reading the audit trail: chain verification (streamed), chain heads for external anchoring,
and the listing behind admin and support views."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.audit.adapters.sql import row_entry
from kora.audit.adapters.tables import audit_log
from kora.audit.domain.record import AuditEntry, check_key
from kora.audit.domain.verification import AuditReport, ChainHeads, ChainVerifier

VERIFY_BATCH_SIZE = 1000
MAX_LIST_LIMIT = 1000


async def verify_audit_chain(
    conn: AsyncConnection,
    *,
    key: bytes,
    chains: int | None = None,
    anchors: ChainHeads | None = None,
) -> AuditReport:
    """Recomputes every record's HMAC and checks prev_hash links and gapless positions, chain
    by chain, streaming the table in batches (one statement, so one consistent snapshot).

    chains: the configured chain count, if known: every chain 0..chains-1 counts as checked
    (an empty chain is valid) and a record outside that range is reported.
    anchors: chain heads exported earlier by `chain_heads`; a chain cut short of its anchor
    (its tail deleted) or rewritten up to it is reported. Without anchors, the removal of a
    chain's last records cannot be seen.
    """
    check_key(key)
    verifier = ChainVerifier(key=key, chains=chains, anchors=dict(anchors or {}))
    query = sa.select(audit_log).order_by(audit_log.c.chain, audit_log.c.position)
    result = await conn.stream(query.execution_options(yield_per=VERIFY_BATCH_SIZE))
    async for rows in result.partitions():
        for row in rows:
            verifier.feed(row_entry(row))
    return verifier.finish()


async def chain_heads(conn: AsyncConnection) -> dict[int, tuple[int, str]]:
    """chain -> (last position, last hash). A scheduled job exports these to an external
    append-only store (log pipeline, WORM bucket); passing an export back to
    `verify_audit_chain(anchors=...)` detects a chain whose last records were deleted."""
    last = (
        sa.select(audit_log.c.chain, sa.func.max(audit_log.c.position).label("position"))
        .group_by(audit_log.c.chain)
        .subquery()
    )
    query = (
        sa.select(audit_log.c.chain, audit_log.c.position, audit_log.c.hash)
        .join(last, sa.and_(audit_log.c.chain == last.c.chain, audit_log.c.position == last.c.position))
        .order_by(audit_log.c.chain)
    )
    rows = (await conn.execute(query)).all()
    return {row.chain: (row.position, row.hash) for row in rows}


async def list_audit(
    conn: AsyncConnection,
    *,
    subject: str | None = None,
    correlation_id: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The most recent records (newest first) for a subject and/or a correlation id, or
    overall when neither is given. `limit` must be in 1..1000 (ValueError otherwise)."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be in 1..{MAX_LIST_LIMIT}")
    query = sa.select(audit_log)
    if subject is not None:
        query = query.where(audit_log.c.subject == subject)
    if correlation_id is not None:
        query = query.where(audit_log.c.correlation_id == correlation_id)
    query = query.order_by(audit_log.c.occurred_at.desc(), audit_log.c.id.desc()).limit(limit)
    return [row_entry(row) for row in (await conn.execute(query)).all()]
