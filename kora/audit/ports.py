"""The audit port every module records through. Records carry no PII: actors and subjects
are opaque ids (`user:<uuid>`, `payment:<uuid>`), details are ids, codes and amounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from kora.audit.domain.validation import AuditDetail

__all__ = ["AuditDetail", "AuditRecorder"]


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
