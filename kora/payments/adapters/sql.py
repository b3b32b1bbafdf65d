"""SQL adapters of the payments module (SQLAlchemy Core)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events import EventRecorder
from kora.kernel import Money
from kora.payments.adapters.events import status_changed_events
from kora.payments.adapters.tables import idempotency_keys, payment_flags, payment_status_history, payments
from kora.payments.domain.idempotency import IdempotencyRecord, IdempotencyRequest, Outcome
from kora.payments.domain.model import Payment, PaymentStatus, PaymentType, StatusChange
from kora.payments.domain.risk import RISK_REVIEW
from kora.payments.ports import CapturedBacklog, PaymentFlag


class SqlPaymentRepository:
    def __init__(self, conn: AsyncConnection, *, events: EventRecorder | None = None) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"
        # Each stored status change is announced in the same transaction (the outbox).
        self._events = events

    async def add(self, payment: Payment) -> None:
        await self.add_many([payment])

    async def add_flag(self, flag: PaymentFlag) -> bool:
        f = payment_flags
        insert = (postgresql.insert if self._pg else sqlite.insert)(f)
        result = await self._conn.execute(
            insert.values(
                payment_id=flag.payment_id,
                source=flag.source,
                case_id=flag.case_id,
                outcome=flag.outcome,
                reason=flag.reason,
                amount=flag.amount,
                currency=flag.currency,
                flagged_at=flag.flagged_at,
            ).on_conflict_do_nothing(index_elements=["payment_id", "case_id"])
        )
        return bool(result.rowcount)

    async def flags(self, payment_id: uuid.UUID) -> list[PaymentFlag]:
        f = payment_flags
        rows = await self._conn.execute(
            sa.select(f).where(f.c.payment_id == payment_id).order_by(f.c.flagged_at, f.c.id)
        )
        return [
            PaymentFlag(
                payment_id=r.payment_id,
                source=r.source,
                case_id=r.case_id,
                outcome=r.outcome,
                reason=r.reason,
                amount=r.amount,
                currency=r.currency,
                flagged_at=r.flagged_at,
            )
            for r in rows
        ]

    async def add_many(self, batch: Sequence[Payment]) -> None:
        if not batch:
            return
        await self._conn.execute(payments.insert(), [_payment_row(p) for p in batch])
        changes = [
            {"payment_id": p.id, "status": c.status.value, "at": c.at, "reason": c.reason, "actor": c.actor}
            for p in batch
            for c in p.new_changes
        ]
        if changes:
            await self._conn.execute(payment_status_history.insert(), changes)
        for p in batch:
            if self._events is not None and p.new_changes:
                self._events.record(*status_changed_events(p, p.new_changes))
            p.new_changes.clear()

    async def save(self, payment: Payment) -> None:
        await self._conn.execute(
            payments.update()
            .where(payments.c.id == payment.id)
            .values(
                status=payment.status.value,
                provider=payment.provider,
                provider_ref=payment.provider_ref,
                failure_code=payment.failure_code,
                updated_at=payment.updated_at,
                refunded_amount=payment.refunded_amount,
                captured_amount=payment.captured_amount,
                captured_at=payment.captured_at,
                settlement_due=payment.settlement_due,
                fee=payment.fee,
                authorization_expires_at=payment.authorization_expires_at,
                merchant_reference=payment.merchant_reference,
                pending_operation=payment.pending_operation,
                provider_asked_at=payment.provider_asked_at,
            )
        )
        await self._append_changes(payment)

    async def _append_changes(self, payment: Payment) -> None:
        if not payment.new_changes:
            return
        await self._conn.execute(
            payment_status_history.insert(),
            [
                {
                    "payment_id": payment.id,
                    "status": c.status.value,
                    "at": c.at,
                    "reason": c.reason,
                    "actor": c.actor,
                }
                for c in payment.new_changes
            ],
        )
        if self._events is not None:
            self._events.record(*status_changed_events(payment, payment.new_changes))
        payment.new_changes.clear()

    async def get(self, payment_id: uuid.UUID, *, for_update: bool = False) -> Payment | None:
        query = sa.select(payments).where(payments.c.id == payment_id)
        if for_update and self._pg:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        history = await self._history([payment_id])
        return _payment(row, history.get(payment_id, []))

    async def find_unresolved(self, *, updated_before: datetime, limit: int) -> list[Payment]:
        p = payments
        rows = (
            await self._conn.execute(
                sa.select(p)
                .where(
                    p.c.status.in_(("INITIATED", "AUTHORIZED")),
                    p.c.provider.is_not(None),
                    # Cash-ins and cash-outs only: card payments and their refunds have their
                    # own resolution job (find_card_work), through the acquirer.
                    p.c.type.in_((PaymentType.CASH_IN.value, PaymentType.CASH_OUT.value)),
                    # Held for a risk analyst: no provider was asked, nothing to query yet.
                    sa.or_(p.c.pending_operation.is_(None), p.c.pending_operation != RISK_REVIEW),
                    p.c.updated_at < updated_before,
                )
                .order_by(p.c.updated_at)
                .limit(limit)
            )
        ).all()
        history = await self._history([r.id for r in rows])
        return [_payment(r, history.get(r.id, [])) for r in rows]

    async def find_card_work(self, *, now: datetime, updated_before: datetime, limit: int) -> list[Payment]:
        p = payments
        card, refund = PaymentType.CARD.value, PaymentType.REFUND.value
        rows = (
            await self._conn.execute(
                sa.select(p)
                .where(
                    # Served by ix_payments_status_updated: only unresolved rows are read.
                    p.c.status.in_(("INITIATED", "AUTHORIZED")),
                    p.c.updated_at < updated_before,
                    p.c.provider.is_not(None),
                    sa.or_(
                        p.c.type == refund,
                        sa.and_(
                            p.c.type == card,
                            sa.or_(
                                p.c.status == "INITIATED",
                                p.c.pending_operation.is_not(None),
                                p.c.authorization_expires_at <= now,
                            ),
                        ),
                    ),
                )
                .order_by(p.c.updated_at)
                .limit(limit)
            )
        ).all()
        history = await self._history([r.id for r in rows])
        return [_payment(r, history.get(r.id, [])) for r in rows]

    async def list_for_user(self, user_id: uuid.UUID, *, limit: int, before_id: uuid.UUID | None) -> list[Payment]:
        p = payments
        query = sa.select(p).where(
            sa.or_(p.c.payer_user_id == user_id, p.c.payee_user_id == user_id, p.c.initiated_by == user_id)
        )
        if before_id is not None:
            query = query.where(p.c.id < before_id)
        rows = (await self._conn.execute(query.order_by(p.c.id.desc()).limit(limit))).all()
        history = await self._history([r.id for r in rows])
        return [_payment(r, history.get(r.id, [])) for r in rows]

    async def find_captured_for_settlement(
        self,
        *,
        provider: str,
        currency: str,
        captured_before: datetime,
        after_id: uuid.UUID | None,
        limit: int,
    ) -> list[uuid.UUID]:
        p = payments
        # Served by ix_payments_provider_status_due (provider, status, ...).
        query = sa.select(p.c.id).where(
            p.c.provider == provider,
            p.c.status == PaymentStatus.CAPTURED.value,
            p.c.currency == currency,
            p.c.captured_at < captured_before,
        )
        if after_id is not None:
            query = query.where(p.c.id > after_id)
        rows = await self._conn.execute(query.order_by(p.c.id).limit(limit))
        return [row.id for row in rows]

    async def captured_backlog(
        self, *, now: datetime, due_by: datetime, provider: str | None, currency: str | None
    ) -> list[CapturedBacklog]:
        p = payments
        amount = sa.func.coalesce(p.c.captured_amount, p.c.amount)
        due = p.c.settlement_due <= due_by
        overdue = p.c.settlement_due < now
        query = sa.select(
            p.c.provider,
            p.c.currency,
            p.c.type,
            sa.func.count().label("payments"),
            sa.func.sum(amount).label("amount"),
            sa.func.sum(sa.case((due, 1), else_=0)).label("due_count"),
            sa.func.sum(sa.case((due, amount), else_=0)).label("due_amount"),
            sa.func.sum(sa.case((overdue, 1), else_=0)).label("overdue_count"),
            sa.func.sum(sa.case((overdue, amount), else_=0)).label("overdue_amount"),
            sa.func.min(p.c.captured_at).label("oldest_captured_at"),
            sa.func.min(p.c.settlement_due).label("oldest_settlement_due"),
        ).where(
            p.c.status == PaymentStatus.CAPTURED.value,
            p.c.provider.is_not(None),
            p.c.settlement_due.is_not(None),
        )
        if provider is not None:
            query = query.where(p.c.provider == provider)
        if currency is not None:
            query = query.where(p.c.currency == currency)
        rows = await self._conn.execute(
            query.group_by(p.c.provider, p.c.currency, p.c.type).order_by(p.c.provider, p.c.currency, p.c.type)
        )
        return [
            CapturedBacklog(
                provider=row.provider,
                currency=row.currency,
                payment_type=row.type,
                count=int(row.payments),
                amount=int(row.amount),
                due_count=int(row.due_count),
                due_amount=int(row.due_amount),
                overdue_count=int(row.overdue_count),
                overdue_amount=int(row.overdue_amount),
                # min() keeps the column's type, so these are UTC-aware like any UtcDateTime.
                oldest_captured_at=row.oldest_captured_at,
                oldest_settlement_due=row.oldest_settlement_due,
            )
            for row in rows
        ]

    async def _history(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[StatusChange]]:
        if not ids:
            return {}
        h = payment_status_history
        rows = await self._conn.execute(sa.select(h).where(h.c.payment_id.in_(ids)).order_by(h.c.id))
        out: dict[uuid.UUID, list[StatusChange]] = {}
        for r in rows:
            out.setdefault(r.payment_id, []).append(StatusChange(PaymentStatus(r.status), r.at, r.reason, r.actor))
        return out


def _payment_row(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "type": payment.type.value,
        "status": payment.status.value,
        "amount": payment.money.amount,
        "currency": payment.money.currency,
        "initiated_by": payment.initiated_by,
        "payer_wallet_id": payment.payer_wallet_id,
        "payee_wallet_id": payment.payee_wallet_id,
        "payer_user_id": payment.payer_user_id,
        "payee_user_id": payment.payee_user_id,
        "provider": payment.provider,
        "provider_ref": payment.provider_ref,
        "correlation_id": payment.correlation_id,
        "failure_code": payment.failure_code,
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
        "fee": payment.fee,
        "parent_id": payment.parent_id,
        "refunded_amount": payment.refunded_amount,
        "captured_amount": payment.captured_amount,
        "captured_at": payment.captured_at,
        "settlement_due": payment.settlement_due,
        "authorization_expires_at": payment.authorization_expires_at,
        "merchant_reference": payment.merchant_reference,
        "pending_operation": payment.pending_operation,
        "provider_asked_at": payment.provider_asked_at,
    }


def _payment(row: Any, history: list[StatusChange]) -> Payment:
    return Payment(
        id=row.id,
        type=PaymentType(row.type),
        money=Money(row.amount, row.currency),
        status=PaymentStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        initiated_by=row.initiated_by,
        payer_wallet_id=row.payer_wallet_id,
        payee_wallet_id=row.payee_wallet_id,
        payer_user_id=row.payer_user_id,
        payee_user_id=row.payee_user_id,
        provider=row.provider,
        provider_ref=row.provider_ref,
        correlation_id=row.correlation_id,
        failure_code=row.failure_code,
        fee=row.fee,
        parent_id=row.parent_id,
        refunded_amount=row.refunded_amount,
        captured_amount=row.captured_amount,
        captured_at=row.captured_at,
        settlement_due=row.settlement_due,
        authorization_expires_at=row.authorization_expires_at,
        merchant_reference=row.merchant_reference,
        pending_operation=row.pending_operation,
        provider_asked_at=row.provider_asked_at,
        history=history,
    )


_COMPLETE = (
    idempotency_keys.update()
    .where(idempotency_keys.c.scope == sa.bindparam("b_scope"), idempotency_keys.c.key == sa.bindparam("b_key"))
    .values(outcome=sa.bindparam("b_outcome"), body=sa.bindparam("b_body"), payment_id=sa.bindparam("b_payment_id"))
)


class SqlIdempotencyStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    async def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        k = idempotency_keys
        row = (await self._conn.execute(sa.select(k).where(k.c.scope == scope, k.c.key == key))).first()
        if row is None:
            return None
        return IdempotencyRecord(
            scope=row.scope,
            key=row.key,
            fingerprint=row.fingerprint,
            outcome=Outcome(row.outcome),
            body=json.loads(row.body) if row.body is not None else None,
            payment_id=row.payment_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def find_by_payment(self, payment_id: uuid.UUID) -> IdempotencyRecord | None:
        k = idempotency_keys
        row = (await self._conn.execute(sa.select(k.c.scope, k.c.key).where(k.c.payment_id == payment_id))).first()
        return None if row is None else await self.get(row.scope, row.key)

    async def delete(self, scope: str, key: str) -> None:
        k = idempotency_keys
        await self._conn.execute(k.delete().where(k.c.scope == scope, k.c.key == key))

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
        insert = (postgresql.insert if self._pg else sqlite.insert)(idempotency_keys)
        result = await self._conn.execute(
            insert.values(
                scope=request.scope,
                key=request.key,
                fingerprint=request.fingerprint,
                outcome=outcome.value,
                body=json.dumps(body, separators=(",", ":")) if body is not None else None,
                payment_id=payment_id,
                created_at=at,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(idempotency_keys.c.key)
        )
        return result.first() is not None

    async def claim_many(
        self,
        claims: Sequence[tuple[IdempotencyRequest, uuid.UUID]],
        *,
        at: datetime,
        expires_at: datetime,
    ) -> set[tuple[str, str]]:
        if not claims:
            return set()
        k = idempotency_keys
        insert = (postgresql.insert if self._pg else sqlite.insert)(k)
        rows = [
            {
                "scope": r.scope,
                "key": r.key,
                "fingerprint": r.fingerprint,
                "outcome": Outcome.IN_FLIGHT.value,
                "body": None,
                "payment_id": payment_id,
                "created_at": at,
                "expires_at": expires_at,
            }
            for r, payment_id in sorted(claims, key=lambda c: (c[0].scope, c[0].key))
        ]  # in key order, so two batches claiming overlapping keys wait instead of deadlocking
        result = await self._conn.execute(
            insert.values(rows).on_conflict_do_nothing(index_elements=["scope", "key"]).returning(k.c.scope, k.c.key)
        )
        return {(row.scope, row.key) for row in result}

    async def complete_many(self, results: Sequence[tuple[IdempotencyRequest, Outcome, dict[str, Any]]]) -> None:
        if not results:
            return
        await self._conn.execute(
            _COMPLETE,
            [
                {
                    "b_scope": r.scope,
                    "b_key": r.key,
                    "b_outcome": o.value,
                    "b_body": json.dumps(b, separators=(",", ":")),
                    # A refusal created no payment: its key points at none (as in the single path).
                    "b_payment_id": uuid.UUID(b["id"]) if o is Outcome.SUCCEEDED and "id" in b else None,
                }
                for r, o, b in results
            ],
        )

    async def complete(self, request: IdempotencyRequest, *, outcome: Outcome, body: dict[str, Any]) -> None:
        k = idempotency_keys
        await self._conn.execute(
            k.update()
            .where(k.c.scope == request.scope, k.c.key == request.key)
            .values(outcome=outcome.value, body=json.dumps(body, separators=(",", ":")))
        )

    async def purge_expired(self, now: datetime) -> int:
        k = idempotency_keys
        result = await self._conn.execute(k.delete().where(k.c.expires_at <= now))
        return result.rowcount or 0
