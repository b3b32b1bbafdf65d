"""Reading the payloads the consumers apply, once, in one place.

Payment types are read case-insensitively and kept in lower case (the payments module's
`PaymentType` values, which the API shows too).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kora.events.domain import subject_for

PAYMENT_STATUS_CHANGED = ("payment.status_changed", 1)
USER_REGISTERED = ("identity.user_registered", 1)
PAYMENT_STATUS_CHANGED_SUBJECT = subject_for(*PAYMENT_STATUS_CHANGED)
USER_REGISTERED_SUBJECT = subject_for(*USER_REGISTERED)

STAFF_ROLES = frozenset({"admin", "support", "recon_reviewer", "recon_approver", "risk_analyst", "leadership"})


@dataclass(frozen=True, slots=True)
class PaymentChange:
    """One `payment.status_changed` v1: the payment as it stands and the statuses it reached."""

    payment_id: uuid.UUID
    payment_type: str
    status: str
    sequence: int
    reached: tuple[str, ...]  # the statuses of `transitions`, in order, each once
    reached_at: Mapping[str, datetime]
    amount: int
    currency: str
    fee: int
    captured_amount: int | None
    provider: str | None
    provider_ref: str | None
    payer_user_id: uuid.UUID | None
    payee_user_id: uuid.UUID | None
    failure_code: str | None
    captured_at: datetime | None
    settlement_due: datetime | None

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> PaymentChange:
        reached: list[str] = []
        reached_at: dict[str, datetime] = {}
        for step in payload["transitions"]:
            status = str(step["status"])
            if status not in reached_at:
                reached.append(status)
                reached_at[status] = _time(step["at"])
        captured = payload.get("captured_amount")
        return cls(
            payment_id=uuid.UUID(str(payload["payment_id"])),
            payment_type=str(payload["payment_type"]).lower(),
            status=str(payload["status"]),
            sequence=int(payload["sequence"]),
            reached=tuple(reached),
            reached_at=reached_at,
            amount=int(payload["amount"]),
            currency=str(payload["currency"]),
            fee=int(payload["fee"]),
            captured_amount=None if captured is None else int(captured),
            provider=_opt(payload.get("provider")),
            provider_ref=_opt(payload.get("provider_ref")),
            payer_user_id=_uuid(payload.get("payer_user_id")),
            payee_user_id=_uuid(payload.get("payee_user_id")),
            failure_code=_opt(payload.get("failure_code")),
            captured_at=_opt_time(payload.get("captured_at")),
            settlement_due=_opt_time(payload.get("settlement_due")),
        )

    @property
    def moved_amount(self) -> int:
        """What actually moved: the captured amount when known (a card capture may be partial)."""
        return self.amount if self.captured_amount is None else self.captured_amount


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _uuid(value: object) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def _time(value: object) -> datetime:
    at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _opt_time(value: object) -> datetime | None:
    return None if value is None else _time(value)
