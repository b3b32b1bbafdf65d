"""The SQL audit trail: appends sealed records to `audit_log` inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.audit.adapters.tables import audit_log
from kora.audit.domain.record import (
    DEFAULT_CHAINS,
    GENESIS_HASH,
    AuditDraft,
    AuditEntry,
    chain_for,
    check_chain_count,
    check_key,
)
from kora.audit.domain.validation import AuditDetail
from kora.audit.ports import AuditEvent, record_one_by_one
from kora.kernel import Clock, new_id

AUDIT_LOCK_NAMESPACE = 0x4B415544  # "KAUD": first key of pg_advisory_xact_lock(int, int)

_LOCK_CHAIN = sa.text("SELECT pg_advisory_xact_lock(:namespace, :chain)")
# Several chains in one statement, always in ascending order (so two batches never deadlock).
_LOCK_CHAINS = sa.text(
    "SELECT count(pg_advisory_xact_lock(:namespace, c)) "
    "FROM (SELECT unnest(CAST(:chains AS integer[])) AS c ORDER BY 1) AS ordered"
)
# Each chain's head through its (chain, position) index; a separate statement from the lock,
# so that under READ COMMITTED it reads after the previous holder's commit.
_HEADS = sa.text(
    "SELECT c.chain, h.position, h.hash FROM unnest(CAST(:chains AS integer[])) AS c(chain) "
    "LEFT JOIN LATERAL (SELECT position, hash FROM audit_log WHERE audit_log.chain = c.chain "
    "ORDER BY position DESC LIMIT 1) AS h ON true"
)


class AuditChainConflictError(RuntimeError):
    """Another transaction took the same (chain, position); the caller's transaction is lost
    and may be retried. Only happens when appends bypass the chain lock."""

    code = "audit_chain_conflict"


class SqlAuditTrail:
    """`AuditRecorder` on SQL: one record per call, appended to the chain of its subject.

    On PostgreSQL the chain is serialized with `pg_advisory_xact_lock(AUDIT_LOCK_NAMESPACE,
    chain)`, held until the caller's transaction ends: write the audit record last in a
    transaction so the lock is held briefly. Requires READ COMMITTED (PostgreSQL's default), so
    the head read after the lock sees the previous holder's commit. On SQLite transactions are
    already serialized (BEGIN IMMEDIATE). The unique (chain, position) is the backstop.
    """

    def __init__(self, conn: AsyncConnection, *, key: bytes, clock: Clock, chains: int = DEFAULT_CHAINS) -> None:
        check_key(key)
        self._conn = conn
        self._key = key
        self._clock = clock
        self._chains = check_chain_count(chains)

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        correlation_id: str | None,
        outcome: str = "success",
        details: Mapping[str, AuditDetail] | None = None,
    ) -> None:
        await self.append(
            actor=actor,
            action=action,
            subject=subject,
            correlation_id=correlation_id,
            outcome=outcome,
            details=details,
        )

    async def append(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        correlation_id: str | None,
        outcome: str = "success",
        details: Mapping[str, AuditDetail] | None = None,
    ) -> AuditEntry:
        """`record`, returning the sealed entry. Raises InvalidAuditRecordError, AuditChainConflictError."""
        draft = AuditDraft.create(
            actor=actor,
            action=action,
            subject=subject,
            outcome=outcome,
            correlation_id=correlation_id,
            details=details,
        )
        chain = chain_for(subject, self._chains)
        if self._conn.dialect.name == "postgresql":
            await self._conn.execute(_LOCK_CHAIN, {"namespace": AUDIT_LOCK_NAMESPACE, "chain": chain})
        head = (
            await self._conn.execute(
                sa.select(audit_log.c.position, audit_log.c.hash)
                .where(audit_log.c.chain == chain)
                .order_by(audit_log.c.position.desc())
                .limit(1)
            )
        ).first()
        position, prev_hash = (head.position + 1, head.hash) if head else (1, GENESIS_HASH)
        entry = draft.seal(
            key=self._key,
            id=new_id(),
            chain=chain,
            position=position,
            prev_hash=prev_hash,
            occurred_at=self._clock.now(),
        )
        try:
            await self._conn.execute(sa.insert(audit_log).values(**entry_row(entry)))
        except IntegrityError as exc:
            raise AuditChainConflictError(f"audit chain {chain} position {position} already taken") from exc
        return entry

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        """Append several records with one lock round, one head read and one insert."""
        if not events:
            return
        if len(events) == 1 or self._conn.dialect.name != "postgresql":
            await record_one_by_one(self, events)
            return
        drafts = [
            (
                AuditDraft.create(
                    actor=e.actor,
                    action=e.action,
                    subject=e.subject,
                    outcome=e.outcome,
                    correlation_id=e.correlation_id,
                    details=e.details,
                ),
                chain_for(e.subject, self._chains),
            )
            for e in events
        ]
        chains = sorted({chain for _, chain in drafts})
        params = {"namespace": AUDIT_LOCK_NAMESPACE, "chains": chains}
        await self._conn.execute(_LOCK_CHAINS, params)
        heads: dict[int, tuple[int, str]] = {
            row.chain: (row.position, row.hash) if row.position is not None else (0, GENESIS_HASH)
            for row in await self._conn.execute(_HEADS, {"chains": chains})
        }
        now = self._clock.now()
        rows: list[dict[str, object]] = []
        for draft, chain in drafts:
            position, prev_hash = heads[chain]
            entry = draft.seal(
                key=self._key,
                id=new_id(),
                chain=chain,
                position=position + 1,
                prev_hash=prev_hash,
                occurred_at=now,
            )
            heads[chain] = (entry.position, entry.hash)
            rows.append(entry_row(entry))
        try:
            await self._conn.execute(sa.insert(audit_log), rows)
        except IntegrityError as exc:
            raise AuditChainConflictError("an audit chain position was already taken") from exc


def entry_row(entry: AuditEntry) -> dict[str, object]:
    return {
        "id": entry.id,
        "chain": entry.chain,
        "position": entry.position,
        "occurred_at": entry.occurred_at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "outcome": entry.outcome,
        "correlation_id": entry.correlation_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def row_entry(row: sa.Row[tuple[object, ...]] | sa.RowMapping) -> AuditEntry:
    m = row._mapping if isinstance(row, sa.Row) else row
    return AuditEntry(
        id=m["id"],
        chain=m["chain"],
        position=m["position"],
        occurred_at=m["occurred_at"],
        actor=m["actor"],
        action=m["action"],
        subject=m["subject"],
        outcome=m["outcome"],
        correlation_id=m["correlation_id"],
        details=m["details"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )
