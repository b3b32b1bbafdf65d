"""An in-memory audit trail: the fake other modules' unit tests record through.

It validates and seals records exactly like the SQL trail, so a test that records PII fails
here as it would in production; `records` is the list of sealed entries, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
from kora.audit.domain.verification import AuditReport, ChainVerifier
from kora.audit.ports import AuditEvent, record_one_by_one
from kora.kernel import Clock, SystemClock, new_id

IN_MEMORY_KEY = b"kora-in-memory-audit-key"


class InMemoryAuditTrail:
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        key: bytes = IN_MEMORY_KEY,
        chains: int = DEFAULT_CHAINS,
    ) -> None:
        check_key(key)
        self.records: list[AuditEntry] = []
        self._clock = clock or SystemClock()
        self._key = key
        self._chains = check_chain_count(chains)
        self._heads: dict[int, tuple[int, str]] = {}

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
        draft = AuditDraft.create(
            actor=actor,
            action=action,
            subject=subject,
            outcome=outcome,
            correlation_id=correlation_id,
            details=details,
        )
        chain = chain_for(subject, self._chains)
        position, prev_hash = self._heads.get(chain, (0, GENESIS_HASH))
        entry = draft.seal(
            key=self._key,
            id=new_id(),
            chain=chain,
            position=position + 1,
            prev_hash=prev_hash,
            occurred_at=self._clock.now(),
        )
        self._heads[chain] = (entry.position, entry.hash)
        self.records.append(entry)

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        await record_one_by_one(self, events)

    def actions(self) -> list[str]:
        """The recorded actions, in order (handy in assertions)."""
        return [entry.action for entry in self.records]

    def verify(self) -> AuditReport:
        """Verifies `records` as `verify_audit_chain` verifies the table."""
        verifier = ChainVerifier(key=self._key, chains=self._chains)
        for entry in sorted(self.records, key=lambda e: (e.chain, e.position)):
            verifier.feed(entry)
        return verifier.finish()
