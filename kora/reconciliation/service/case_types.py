"""What the review's use cases take and give: the acting principal, the mismatch recorder
port, and the case as shown to people (no database rows leave the service)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


class Principal(Protocol):
    """Who acts: the identity service's user id and roles (the HTTP layer or the CLI builds it)."""

    @property
    def user_id(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)


class MismatchRecorder(Protocol):
    """Writes the confirmed mismatch for the core (the service's outbox, in the caller's
    transaction): the core flags the payment for support and admin (reconciliation never
    confirms a mismatched payment settled)."""

    def __call__(
        self,
        conn: AsyncConnection,
        *,
        case_id: uuid.UUID,
        payment_id: str,
        outcome: str,
        reason: str | None,
        amount: int | None,
        currency: str | None,
        correlation_id: str,
    ) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class Case:
    id: uuid.UUID
    provider: str
    report_id: uuid.UUID
    line_number: int | None
    payment_id: str | None
    outcome: str
    reason: str | None
    auto_resolution: str
    amount: int | None
    currency: str | None
    status: str
    opened_at: datetime
    updated_at: datetime
    proposal_kind: str | None
    proposal_amount: int | None
    proposal_currency: str | None
    proposal_note: str | None
    proposal_payment_id: str | None
    proposed_by: str | None
    decided_by: str | None
    core_status: str | None
    query_attempts: int
    posting_attempts: int
    posting_error: str | None
    posted_transaction_id: str | None
    close_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name, value in out.items():
            if isinstance(value, uuid.UUID):
                out[name] = str(value)
            elif isinstance(value, datetime):
                out[name] = value.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: list[Case]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: Case
    evidence: dict[str, Any]
    comments: list[dict[str, Any]]
    history: list[dict[str, Any]]


def case_from_row(row: dict[str, Any]) -> Case:
    return Case(**{name: row[name] for name in Case.__dataclass_fields__})
