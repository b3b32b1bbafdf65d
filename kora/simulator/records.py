"""The simulator's ground truth: every operation it recorded, its money movements and what
was injected. Plain data, no I/O."""

from __future__ import annotations

import enum
import heapq
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kora.simulator.behaviour import Behaviour


class Status(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"
    # card authorizations
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


class Action(enum.StrEnum):
    FINISH = "finish"
    REVERSE = "reverse"
    EXPIRE = "expire"
    CHARGEBACK = "chargeback"


INFLOW_KINDS = frozenset({"collection", "checkout", "capture"})


@dataclass(slots=True)
class Movement:
    """One line of a settlement report. ``amount`` is signed from the merchant's side (money
    in > 0); ``fee`` is what the provider charged (negative when refunded); net = amount - fee."""

    line_id: str
    operation_id: str
    type: str
    status: str
    amount: int
    fee: int
    at: datetime

    @property
    def net(self) -> int:
        """What the movement did to the merchant's balance (nothing for a failure)."""
        return 0 if self.status == "failed" else self.amount - self.fee


@dataclass(slots=True)
class Operation:
    id: str
    provider: str
    kind: str  # collection | disbursement | checkout | payout | authorization
    reference: str  # the caller's reference (X-Reference-Id, Idempotency-Key, merchant reference)
    external_id: str | None
    amount: int
    currency: str
    behaviour: Behaviour
    party: str | None
    created_at: datetime
    status: Status = Status.PENDING
    reason: str | None = None
    fee: int = 0
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    reversed_at: datetime | None = None
    answered_late: bool = False
    callback_url: str | None = None
    callbacks_sent: int = 0
    callbacks_delivered: int = 0
    request_hash: str | None = None
    planned_status: Status | None = None
    planned_reason: str | None = None
    movements: list[Movement] = field(default_factory=list)
    # card authorizations only
    captured_amount: int = 0
    refunded_amount: int = 0
    chargeback_amount: int = 0
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def ground_truth(self) -> dict[str, Any]:
        """The operation as the admin ledger shows it (the party is masked)."""
        return {
            "id": self.id,
            "provider": self.provider,
            "kind": self.kind,
            "reference": self.reference,
            "external_id": self.external_id,
            "amount": self.amount,
            "currency": self.currency,
            "fee": self.fee,
            "status": str(self.status),
            "reason": self.reason,
            "behaviour": self.behaviour.code,
            "party": mask(self.party),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "finished_at": iso(self.finished_at),
            "reversed_at": iso(self.reversed_at),
            "answered_late": self.answered_late,
            "callbacks_sent": self.callbacks_sent,
            "callbacks_delivered": self.callbacks_delivered,
            "captured_amount": self.captured_amount,
            "refunded_amount": self.refunded_amount,
            "chargeback_amount": self.chargeback_amount,
            "expires_at": iso(self.expires_at),
            "movements": [
                {
                    "line_id": m.line_id,
                    "type": m.type,
                    "status": m.status,
                    "amount": m.amount,
                    "fee": m.fee,
                    "net": m.net,
                    "at": iso(m.at),
                }
                for m in self.movements
            ],
        }


def iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


def mask(party: str | None) -> str | None:
    if party is None:
        return None
    return "*" * max(len(party) - 4, 0) + party[-4:]


@dataclass(order=True, slots=True)
class Due:
    at: datetime
    seq: int
    operation_id: str = field(compare=False)
    action: Action = field(compare=False)


class Ledger:
    """Every operation, indexed by id, by (provider, reference) and by idempotency key,
    plus the queue of time-driven transitions."""

    def __init__(self) -> None:
        self.operations: dict[str, Operation] = {}
        self.by_reference: dict[tuple[str, str, str], str] = {}
        self.unrecorded: list[dict[str, Any]] = []  # requests held then refused, never recorded
        self._due: list[Due] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)

    def next_number(self) -> int:
        return next(self._ids)

    def add(self, operation: Operation) -> None:
        self.operations[operation.id] = operation
        self.by_reference[(operation.provider, operation.kind, operation.reference)] = operation.id

    def find(self, provider: str, kind: str, reference: str) -> Operation | None:
        operation_id = self.by_reference.get((provider, kind, reference))
        return self.operations.get(operation_id) if operation_id is not None else None

    def get(self, provider: str, operation_id: str) -> Operation | None:
        operation = self.operations.get(operation_id)
        return operation if operation is not None and operation.provider == provider else None

    def schedule(self, at: datetime, operation_id: str, action: Action) -> None:
        heapq.heappush(self._due, Due(at, next(self._seq), operation_id, action))

    def pop_due(self, now: datetime) -> list[Due]:
        due: list[Due] = []
        while self._due and self._due[0].at <= now:
            due.append(heapq.heappop(self._due))
        return due

    def of_provider(self, provider: str) -> list[Operation]:
        return [op for op in self.operations.values() if op.provider == provider]

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]
