"""The audit port every module records through. Records carry no PII: actors and subjects
are opaque ids (`user:<uuid>`, `payment:<uuid>`), details are ids, codes and amounts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kora.audit.domain.validation import AuditDetail

__all__ = ["AuditDetail", "AuditRecorder"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One record to append, for `record_many`."""

    actor: str
    action: str
    subject: str
    correlation_id: str | None
    outcome: str = "success"
    details: Mapping[str, AuditDetail] | None = None


class AuditRecorder(Protocol):
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
        """Append one who/what/when record inside the caller's open transaction.

        actor: `user:<uuid>`, `admin:<uuid>`, `system` or `service:<name>`.
        action: dotted verb, e.g. `payment.p2p.captured`, `auth.login.failed`.
        details: flat ids, codes and amounts (str, int, bool, None); never PII or credentials.

        Raises `InvalidAuditRecordError` (a ValueError) when a field looks like PII or is malformed.
        """
        ...

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        """Append several records at once (group commit), in order, inside the caller's open
        transaction: the same guarantees as `record`, with one lock round for all chains."""
        ...


async def record_one_by_one(recorder: AuditRecorder, events: Sequence[AuditEvent]) -> None:
    """`record_many` in its simplest form: each event through `record`, in order (for
    recorders with nothing to gain from batching, and for test doubles)."""
    for event in events:
        await recorder.record(
            actor=event.actor,
            action=event.action,
            subject=event.subject,
            correlation_id=event.correlation_id,
            outcome=event.outcome,
            details=event.details,
        )
