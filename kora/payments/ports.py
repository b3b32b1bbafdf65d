"""Ports of the payments module. The composition root plugs adapters into them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from kora.audit.ports import AuditRecorder
from kora.events import EventRecorder
from kora.ledger import Ledger
from kora.payments.domain.idempotency import IdempotencyRecord, IdempotencyRequest, Outcome
from kora.payments.domain.model import Payment
from kora.payments.domain.risk import ReviewDecision, RiskVerdict
from kora.providers import CardAcquirer, ProviderGateway


@dataclass(frozen=True, slots=True)
class PaymentFlag:
    """A payment flagged from outside the payments module: `source` (reconciliation) confirmed
    `outcome` (MISMATCH, MISSING_INTERNAL, MISSING_PROVIDER) with `reason` in its case `case_id`.
    Amounts in minor units. Shown to support and administrators with the payment."""

    payment_id: uuid.UUID
    source: str
    case_id: str
    outcome: str
    reason: str | None
    amount: int | None
    currency: str | None
    flagged_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "case_id": self.case_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "amount": self.amount,
            "currency": self.currency,
            "flagged_at": self.flagged_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class CapturedBacklog:
    """Captured provider payments awaiting settlement, for one provider, currency and payment
    type. Amounts are minor units of what was captured; `overdue` counts those whose
    settlement is past its due time, `due` those due by the `due_by` asked for (overdue included)."""

    provider: str
    currency: str
    payment_type: str
    count: int
    amount: int
    due_count: int
    due_amount: int
    overdue_count: int
    overdue_amount: int
    oldest_captured_at: datetime | None
    oldest_settlement_due: datetime | None


class PaymentRepository(Protocol):
    async def add(self, payment: Payment) -> None:
        """Insert a new payment and its status history."""
        ...

    async def add_many(self, payments: Sequence[Payment]) -> None:
        """`add` for several payments at once."""
        ...

    async def save(self, payment: Payment) -> None:
        """Persist the payment's current status and append its new status changes."""
        ...

    async def add_flag(self, flag: PaymentFlag) -> bool:
        """Store the flag; False (nothing written) when the payment already has one for that case."""
        ...

    async def flags(self, payment_id: uuid.UUID) -> list[PaymentFlag]:
        """The payment's flags, oldest first."""
        ...

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None: ...

    async def find_unresolved(self, *, updated_before: datetime, limit: int) -> list[Payment]:
        """Provider payments still INITIATED or AUTHORIZED, last changed before `updated_before`,
        oldest first: the sweeper's work list."""
        ...

    async def list_for_user(self, user_id: uuid.UUID, *, limit: int, before_id: uuid.UUID | None) -> list[Payment]:
        """Payments the user is a party to, newest first."""
        ...

    async def find_card_work(self, *, now: datetime, updated_before: datetime, limit: int) -> list[Payment]:
        """The card resolution job's work list, last changed before `updated_before`, oldest
        first: card payments still INITIATED, AUTHORIZED ones with an operation pending at the
        acquirer or whose authorization lapsed by `now`, and provider refunds not yet resolved."""
        ...

    async def find_captured_for_settlement(
        self,
        *,
        provider: str,
        currency: str,
        captured_before: datetime,
        after_id: uuid.UUID | None,
        limit: int,
    ) -> list[uuid.UUID]:
        """Ids of the provider's CAPTURED payments in `currency` captured before
        `captured_before`, in id order after `after_id`: the settlement step's work list (read
        without locks; the step locks and re-checks each payment)."""
        ...

    async def captured_backlog(
        self, *, now: datetime, due_by: datetime, provider: str | None, currency: str | None
    ) -> list[CapturedBacklog]:
        """Provider payments CAPTURED and not yet settled, per provider, currency and type
        (optionally one provider / currency): what the settlement step still has to move."""
        ...


class IdempotencyStore(Protocol):
    async def get(self, scope: str, key: str) -> IdempotencyRecord | None: ...

    async def delete(self, scope: str, key: str) -> None: ...

    async def find_by_payment(self, payment_id: uuid.UUID) -> IdempotencyRecord | None:
        """The key whose request created this payment, if any."""
        ...

    async def insert(
        self,
        request: IdempotencyRequest,
        *,
        outcome: Outcome,
        body: dict[str, Any] | None,
        payment_id: uuid.UUID | None,
        at: datetime,
        expires_at: datetime,
    ) -> bool:
        """Insert the record; False when the key already exists (a concurrent duplicate)."""
        ...

    async def claim_many(
        self,
        claims: Sequence[tuple[IdempotencyRequest, uuid.UUID]],
        *,
        at: datetime,
        expires_at: datetime,
    ) -> set[tuple[str, str]]:
        """Insert in-flight records for (request, payment id) pairs; returns the (scope, key)
        pairs actually claimed (the others already exist)."""
        ...

    async def complete(self, request: IdempotencyRequest, *, outcome: Outcome, body: dict[str, Any]) -> None: ...

    async def complete_many(self, results: Sequence[tuple[IdempotencyRequest, Outcome, dict[str, Any]]]) -> None: ...

    async def purge_expired(self, now: datetime) -> int: ...


class PaymentsUnitOfWork(Protocol):
    """One database transaction spanning the payment, its ledger postings, its audit record and
    its idempotency record."""

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def audit(self) -> AuditRecorder: ...

    @property
    def events(self) -> EventRecorder:
        """The events recorded in this transaction (the repositories record them)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


PaymentsUnitOfWorkFactory = Callable[[], PaymentsUnitOfWork]


class PaymentRisk(Protocol):
    """The risk gate on the payment path. Every method works inside the payment's unit of work
    (`uow`), so the risk reservation commits or rolls back with the payment: `assess` judges the
    payment and reserves its usage in the payer's windows (atomically per payer: concurrent
    payments cannot both pass a cap only one fits); `captured` makes the reservation count for
    good; `released` takes it out of the windows (failed or rejected). All idempotent by payment
    id; `captured`/`released` do nothing for a payment risk never assessed."""

    async def assess(
        self, uow: PaymentsUnitOfWork, payment: Payment, *, device_id: str, settles_now: bool = False
    ) -> RiskVerdict:
        """`settles_now`: an allowed payment is captured in this same transaction (P2P, merchant),
        so its reservation counts for good at once (no `captured` call needed)."""
        ...

    async def assess_many(self, uow: PaymentsUnitOfWork, payments: Sequence[tuple[Payment, str]]) -> list[RiskVerdict]:
        """`assess` for each (payment, device id) of one transaction (a group commit), in the
        order that takes the payers' locks consistently across transactions; verdicts in the
        order given."""
        ...

    async def review_decision(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> ReviewDecision | None:
        """The analyst's decision on a payment held for review, if one was made."""
        ...

    async def captured(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> None: ...

    async def captured_many(self, uow: PaymentsUnitOfWork, payment_ids: Sequence[uuid.UUID]) -> None:
        """`captured` for the payments a group commit posted, in one go."""
        ...

    async def released(self, uow: PaymentsUnitOfWork, payment_id: uuid.UUID) -> None: ...

    async def record_review(
        self,
        uow: PaymentsUnitOfWork,
        payment_id: uuid.UUID,
        decision: ReviewDecision,
        *,
        analyst: str,
        note: str | None,
    ) -> None:
        """Store a risk analyst's decision with the payment's assessment (its policy version
        and rules), for the review-outcome statistics; raises nothing if stored twice."""
        ...


class RecipientDirectory(Protocol):
    async def user_for_phone(self, phone_number: str) -> uuid.UUID | None:
        """The user registered with this phone number, if any (no hint otherwise)."""
        ...

    async def mobile_money_number(self, user_id: uuid.UUID) -> str:
        """The customer's own mobile-money number (E.164), where a provider collects from or
        pays out to. PII: it goes to the provider and nowhere else (no log, no event)."""
        ...


class ProviderRegistry(Protocol):
    def get(self, name: str) -> ProviderGateway | None: ...

    @property
    def default(self) -> str: ...

    def route(self, operation: str, currency: str) -> tuple[str, ...]:
        """Providers to try in order; the next only when the previous certainly did not accept."""
        ...

    def settlement_days(self, name: str) -> int:
        """J+N: how many days after confirmation the provider settles."""
        ...


class CardAcquirerRegistry(Protocol):
    """The configured card acquirers by name; `default` None when there is none."""

    def get(self, name: str) -> CardAcquirer | None: ...

    @property
    def default(self) -> str | None: ...
