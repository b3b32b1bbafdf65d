"""An in-memory database and unit of work with transaction semantics.

Entering a unit of work copies the committed state; `commit()` swaps the copy in. Leaving
without commit (an exception, an early return) discards every change — ledger rows, holds,
payments, idempotency records and audit records — exactly as a rolled-back transaction would,
so a test can show that a failed use case changed nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from kora.audit import AuditDetail, AuditEvent, AuditRecorder, InMemoryAuditTrail
from kora.audit.ports import record_one_by_one
from kora.events import EventRecorder
from kora.kernel import Clock
from kora.ledger import Ledger
from kora.payments.ports import IdempotencyStore, PaymentRepository
from tests.fakes.ledger import InMemoryLedgerStore, LedgerState
from tests.fakes.payments import (
    IdempotencyState,
    InMemoryIdempotencyStore,
    InMemoryPaymentRepository,
    PaymentState,
)


@dataclass
class InMemoryDatabase:
    """The committed state every unit of work starts from."""

    clock: Clock
    audit: InMemoryAuditTrail
    ledger: LedgerState = field(default_factory=LedgerState)
    payments: PaymentState = field(default_factory=PaymentState)
    idempotency: IdempotencyState = field(default_factory=IdempotencyState)
    commits: int = 0
    # Units of work currently inside their `async with` block (a provider call must see 0).
    open_units: int = 0


class StagedAudit:
    """The unit of work's `AuditRecorder`: validates each record at once (through a scratch
    `InMemoryAuditTrail`, so PII is refused where production refuses it) and appends the
    records to the shared trail only on commit."""

    def __init__(self, trail: InMemoryAuditTrail, clock: Clock) -> None:
        self._trail = trail
        self._scratch = InMemoryAuditTrail(clock=clock)
        self._pending: list[dict[str, Any]] = []

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
        call: dict[str, Any] = {
            "actor": actor,
            "action": action,
            "subject": subject,
            "correlation_id": correlation_id,
            "outcome": outcome,
            "details": dict(details) if details is not None else None,
        }
        await self._scratch.record(**call)
        self._pending.append(call)

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        await record_one_by_one(self, events)

    async def flush(self) -> None:
        for call in self._pending:
            await self._trail.record(**call)
        self._pending.clear()


class InMemoryUnitOfWork:
    """`kora.payments.ports.PaymentsUnitOfWork` over an `InMemoryDatabase`."""

    # Typed as the port declares them (Protocol attributes are invariant); the concrete fakes
    # are kept alongside for commit and for tests.
    payments: PaymentRepository
    idempotency: IdempotencyStore
    ledger: Ledger
    audit: AuditRecorder
    ledger_store: InMemoryLedgerStore
    payment_repository: InMemoryPaymentRepository
    idempotency_store: InMemoryIdempotencyStore
    staged_audit: StagedAudit
    events: EventRecorder

    def __init__(self, db: InMemoryDatabase) -> None:
        self._db = db
        self._open = False
        self._committed = False

    def _begin(self) -> None:
        self.ledger_store = InMemoryLedgerStore(self._db.ledger.copy())
        self.payment_repository = InMemoryPaymentRepository(self._db.payments.copy())
        self.idempotency_store = InMemoryIdempotencyStore(self._db.idempotency.copy())
        self.staged_audit = StagedAudit(self._db.audit, self._db.clock)
        self.ledger = Ledger(self.ledger_store, self._db.clock)
        self.payments = self.payment_repository
        self.idempotency = self.idempotency_store
        self.audit = self.staged_audit
        self.events = EventRecorder()

    async def __aenter__(self) -> Self:
        if self._open:
            raise RuntimeError("unit of work entered twice")
        self._open = True
        self._db.open_units += 1
        self._begin()
        return self

    async def commit(self) -> None:
        if not self._open or self._committed:
            raise RuntimeError("no open transaction")
        self._db.ledger = self.ledger_store.state
        self._db.payments = self.payment_repository.state
        self._db.idempotency = self.idempotency_store.state
        await self.staged_audit.flush()
        self._db.commits += 1
        self._committed = True
        # Like a connection after COMMIT: later writes start a transaction that is rolled back.
        self._begin()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        self._db.open_units -= 1


class InMemoryUnitOfWorkFactory:
    """A `PaymentsUnitOfWorkFactory`; counts the units of work it opened."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self.opened = 0

    def __call__(self) -> InMemoryUnitOfWork:
        self.opened += 1
        return InMemoryUnitOfWork(self.db)
