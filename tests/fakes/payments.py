"""In-memory payment repository and idempotency store, faithful to the SQL adapters: stored
payments are copies (a caller's object is never shared with the table), new status changes are
appended and cleared on add/save, and idempotency bodies go through JSON as in the database."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kora.payments import Outcome, Payment, PaymentStatus, PaymentType
from kora.payments.domain.idempotency import IdempotencyRecord, IdempotencyRequest
from kora.payments.ports import CapturedBacklog, PaymentFlag


@dataclass
class PaymentState:
    """The payments and payment_status_history tables. Stored payments are never mutated in
    place, so copying the dict is a snapshot."""

    payments: dict[uuid.UUID, Payment] = field(default_factory=dict)
    flags: list[PaymentFlag] = field(default_factory=list)

    def copy(self) -> PaymentState:
        return PaymentState(dict(self.payments), list(self.flags))


def _stored(payment: Payment) -> Payment:
    stored = copy.deepcopy(payment)
    stored.new_changes = []
    return stored


class InMemoryPaymentRepository:
    """`kora.payments.ports.PaymentRepository` over a `PaymentState`."""

    def __init__(self, state: PaymentState | None = None) -> None:
        self.state = state if state is not None else PaymentState()

    async def add(self, payment: Payment) -> None:
        if payment.id in self.state.payments:
            raise LookupError(f"payment {payment.id} already exists")
        # The SQL adapter inserts the row, then exactly the not-yet-persisted changes.
        stored = _stored(payment)
        stored.history = list(payment.new_changes)
        self.state.payments[payment.id] = stored
        payment.new_changes.clear()

    async def add_many(self, payments: Sequence[Payment]) -> None:
        for payment in payments:
            await self.add(payment)

    async def add_flag(self, flag: PaymentFlag) -> bool:
        if any((f.payment_id, f.case_id) == (flag.payment_id, flag.case_id) for f in self.state.flags):
            return False
        self.state.flags.append(flag)
        return True

    async def flags(self, payment_id: uuid.UUID) -> list[PaymentFlag]:
        return [f for f in self.state.flags if f.payment_id == payment_id]

    async def save(self, payment: Payment) -> None:
        existing = self.state.payments.get(payment.id)
        if existing is None:
            raise LookupError(f"payment {payment.id} does not exist")
        stored = _stored(existing)
        stored.status = payment.status
        stored.provider = payment.provider
        stored.provider_ref = payment.provider_ref
        stored.failure_code = payment.failure_code
        stored.updated_at = payment.updated_at
        stored.refunded_amount = payment.refunded_amount
        stored.captured_amount = payment.captured_amount
        stored.captured_at = payment.captured_at
        stored.settlement_due = payment.settlement_due
        stored.fee = payment.fee
        stored.authorization_expires_at = payment.authorization_expires_at
        stored.merchant_reference = payment.merchant_reference
        stored.pending_operation = payment.pending_operation
        stored.history = [*existing.history, *payment.new_changes]
        self.state.payments[payment.id] = stored
        payment.new_changes.clear()

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None:
        stored = self.state.payments.get(payment_id)
        return copy.deepcopy(stored) if stored is not None else None

    async def list_for_user(self, user_id: uuid.UUID, *, limit: int, before_id: uuid.UUID | None) -> list[Payment]:
        mine = [
            p for p in self.state.payments.values() if p.is_party(user_id) and (before_id is None or p.id < before_id)
        ]
        mine.sort(key=lambda p: p.id, reverse=True)
        return [copy.deepcopy(p) for p in mine[:limit]]

    async def find_unresolved(self, *, updated_before: datetime, limit: int) -> list[Payment]:
        pending = [
            p
            for p in self.state.payments.values()
            if p.provider is not None
            and p.type in (PaymentType.CASH_IN, PaymentType.CASH_OUT)
            and p.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED)
            and p.pending_operation != "risk_review"
            and p.updated_at < updated_before
        ]
        pending.sort(key=lambda p: p.updated_at)
        return [copy.deepcopy(p) for p in pending[:limit]]

    async def find_card_work(self, *, now: datetime, updated_before: datetime, limit: int) -> list[Payment]:
        def due(p: Payment) -> bool:
            if p.type is PaymentType.REFUND:
                return True
            expired = p.authorization_expires_at is not None and p.authorization_expires_at <= now
            return p.type is PaymentType.CARD and (
                p.status is PaymentStatus.INITIATED or p.pending_operation is not None or expired
            )

        work = [
            p
            for p in self.state.payments.values()
            if p.provider is not None
            and p.status in (PaymentStatus.INITIATED, PaymentStatus.AUTHORIZED)
            and p.updated_at < updated_before
            and due(p)
        ]
        work.sort(key=lambda p: p.updated_at)
        return [copy.deepcopy(p) for p in work[:limit]]

    async def find_captured_for_settlement(
        self,
        *,
        provider: str,
        currency: str,
        captured_before: datetime,
        after_id: uuid.UUID | None,
        limit: int,
    ) -> list[uuid.UUID]:
        ids = [
            p.id
            for p in self.state.payments.values()
            if p.provider == provider
            and p.status is PaymentStatus.CAPTURED
            and p.money.currency == currency
            and p.captured_at is not None
            and p.captured_at < captured_before
            and (after_id is None or p.id > after_id)
        ]
        return sorted(ids)[:limit]

    async def captured_backlog(
        self, *, now: datetime, due_by: datetime, provider: str | None, currency: str | None
    ) -> list[CapturedBacklog]:
        groups: dict[tuple[str, str, str], list[Payment]] = {}
        for p in self.state.payments.values():
            if (
                p.status is PaymentStatus.CAPTURED
                and p.provider is not None
                and p.settlement_due is not None
                and provider in (None, p.provider)
                and currency in (None, p.money.currency)
            ):
                groups.setdefault((p.provider, p.money.currency, p.type.value), []).append(p)
        rows = []
        for (name, code, kind), group in sorted(groups.items()):
            due = [p for p in group if p.settlement_due is not None and p.settlement_due <= due_by]
            overdue = [p for p in group if p.settlement_due is not None and p.settlement_due < now]
            rows.append(
                CapturedBacklog(
                    provider=name,
                    currency=code,
                    payment_type=kind,
                    count=len(group),
                    amount=sum(_captured(p) for p in group),
                    due_count=len(due),
                    due_amount=sum(_captured(p) for p in due),
                    overdue_count=len(overdue),
                    overdue_amount=sum(_captured(p) for p in overdue),
                    oldest_captured_at=min((p.captured_at for p in group if p.captured_at), default=None),
                    oldest_settlement_due=min((p.settlement_due for p in group if p.settlement_due), default=None),
                )
            )
        return rows


def _captured(payment: Payment) -> int:
    return payment.captured_amount or payment.money.amount


@dataclass(frozen=True, slots=True)
class IdempotencyRow:
    fingerprint: str
    outcome: Outcome
    body_json: str | None
    payment_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime


@dataclass
class IdempotencyState:
    """The idempotency_keys table, keyed by (scope, key)."""

    rows: dict[tuple[str, str], IdempotencyRow] = field(default_factory=dict)

    def copy(self) -> IdempotencyState:
        return IdempotencyState(dict(self.rows))


def _json(body: dict[str, Any] | None) -> str | None:
    return json.dumps(body, separators=(",", ":")) if body is not None else None


class InMemoryIdempotencyStore:
    """`kora.payments.ports.IdempotencyStore` over an `IdempotencyState`."""

    def __init__(self, state: IdempotencyState | None = None) -> None:
        self.state = state if state is not None else IdempotencyState()

    async def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        row = self.state.rows.get((scope, key))
        if row is None:
            return None
        return IdempotencyRecord(
            scope=scope,
            key=key,
            fingerprint=row.fingerprint,
            outcome=row.outcome,
            body=json.loads(row.body_json) if row.body_json is not None else None,
            payment_id=row.payment_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def find_by_payment(self, payment_id: uuid.UUID) -> IdempotencyRecord | None:
        for (scope, key), row in self.state.rows.items():
            if row.payment_id == payment_id:
                return await self.get(scope, key)
        return None

    async def delete(self, scope: str, key: str) -> None:
        self.state.rows.pop((scope, key), None)

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
        key = (request.scope, request.key)
        if key in self.state.rows:
            return False
        self.state.rows[key] = IdempotencyRow(request.fingerprint, outcome, _json(body), payment_id, at, expires_at)
        return True

    async def complete(self, request: IdempotencyRequest, *, outcome: Outcome, body: dict[str, Any]) -> None:
        key = (request.scope, request.key)
        row = self.state.rows.get(key)
        if row is not None:  # like the SQL UPDATE: no row, nothing to do
            self.state.rows[key] = IdempotencyRow(
                row.fingerprint, outcome, _json(body), row.payment_id, row.created_at, row.expires_at
            )

    async def claim_many(
        self,
        claims: Sequence[tuple[IdempotencyRequest, uuid.UUID]],
        *,
        at: datetime,
        expires_at: datetime,
    ) -> set[tuple[str, str]]:
        claimed: set[tuple[str, str]] = set()
        for request, payment_id in claims:
            if await self.insert(
                request, outcome=Outcome.IN_FLIGHT, body=None, payment_id=payment_id, at=at, expires_at=expires_at
            ):
                claimed.add((request.scope, request.key))
        return claimed

    async def complete_many(self, results: Sequence[tuple[IdempotencyRequest, Outcome, dict[str, Any]]]) -> None:
        for request, outcome, body in results:
            await self.complete(request, outcome=outcome, body=body)
            row = self.state.rows.get((request.scope, request.key))
            if row is not None and outcome is not Outcome.SUCCEEDED:  # like the SQL adapter
                self.state.rows[(request.scope, request.key)] = IdempotencyRow(
                    row.fingerprint, row.outcome, row.body_json, None, row.created_at, row.expires_at
                )

    async def purge_expired(self, now: datetime) -> int:
        expired = [key for key, row in self.state.rows.items() if row.expires_at <= now]
        for key in expired:
            del self.state.rows[key]
        return len(expired)
