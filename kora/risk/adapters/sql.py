"""`SqlRiskActivity`: the payer and payee history in the core's database (tables in
`kora.risk.adapters.tables`, migration 0010), answering the same context as
`InMemoryRiskActivity`, and reserving a payment's usage atomically with its assessment.

Atomic velocity: `assess_and_reserve` serialises the payer before it reads the windows —
`pg_advisory_xact_lock(RISK_LOCK_NAMESPACE, hashtext(payer_id))` on PostgreSQL, the database
write lock (`BEGIN IMMEDIATE`, see `kora.platform.db`) on SQLite — then assesses, then records
the payment in the same transaction. The lock is held until that transaction ends, so the next
payment of the same payer reads the windows with this one in them: two concurrent payments can
never both pass a cap only one of them fits. Payments of different payers do not wait on each
other (two payers may share a lock key by hash collision: they then only wait, never double-pass).

In the caller's unit of work: pass `connection=` (the payment's transaction, e.g.
`SqlUnitOfWork.connection`) and the reservation commits or rolls back with the payment. Call it
early in that transaction and keep the transaction short: the payer's lock is held until it ends.
On PostgreSQL the transaction must be READ COMMITTED (the default), so the reads after the lock
see the previous holder's commit.

Where it differs from the in-memory reference, on purpose: every counted payment recorded
before the request is in its windows even if stamped later than the request's `at` (clock skew
between app servers, a retried request), so a skewed clock cannot open a gap in a cap; in a
time-ordered replay the two are identical. `recent_amounts` comes unordered.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from loguru import logger
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock, SystemClock
from kora.observability import get_tracer
from kora.risk.adapters.tables import COUNTED, risk_devices, risk_payer_hours, risk_payments
from kora.risk.domain.assessment import assess
from kora.risk.domain.model import Decision, Outcome, PaymentType, Reason, RiskContext, RiskRequest, Usage, Window
from kora.risk.domain.policy import Policy
from kora.risk.domain.reservation import Reservation, ReservationError, ReservationStatus, committed, released
from kora.risk.ports import PolicySource

RISK_LOCK_NAMESPACE = 0x4B52534B  # "KRSK": first key of pg_advisory_xact_lock(int, int)

_LOCK_PAYER = sa.text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:payer))")
_tracer = get_tracer("kora.risk")
_p = risk_payments.c
_COUNTED = _p.status.in_(COUNTED)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)  # PostgreSQL's sum(bigint) is numeric


def _types(types: frozenset[PaymentType]) -> list[str]:
    return sorted(t.value for t in types)


def _decision(row: RowMapping) -> Decision:
    return Decision(
        outcome=Outcome[str(row["outcome"]).upper()],
        reasons=tuple(Reason(**reason) for reason in row["reasons"]),
        score=int(row["score"]),
        policy_version=str(row["policy_version"]),
    )


def _same_request(row: RowMapping, request: RiskRequest) -> bool:
    return bool(
        row["payer_id"] == request.payer_id
        and row["payee_id"] == request.payee_id
        and row["amount"] == request.amount
        and row["currency"] == request.currency
        and row["type"] == request.type.value
    )


class SqlRiskActivity:
    """The risk store on SQL: `context_for` (the `RiskContextSource` port), `assess_and_reserve`,
    `commit` and `release` (the `RiskReservations` port). Every method takes an optional
    `connection`: given, it works inside the caller's transaction and never commits; absent, it
    opens and commits its own."""

    def __init__(self, engine: AsyncEngine, policies: PolicySource, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._policies = policies
        self._clock = clock or SystemClock()
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @property
    def policy_version(self) -> str:
        return self._policies.current().version

    @asynccontextmanager
    async def _transaction(self, connection: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        if connection is not None:
            yield connection
            return
        async with self._engine.begin() as conn:
            yield conn

    # --- the context ---------------------------------------------------------------------

    async def context_for(
        self, request: RiskRequest, policy: Policy, *, connection: AsyncConnection | None = None
    ) -> RiskContext:
        """The context of `request` (no lock, nothing written): for explaining and replaying a
        decision. The payment path uses `assess_and_reserve`."""
        if connection is not None:
            return await self._context(connection, request, policy)
        async with self._engine.connect() as conn:
            return await self._context(conn, request, policy)

    async def _context(self, conn: AsyncConnection, request: RiskRequest, policy: Policy) -> RiskContext:
        at, flags = request.at, policy.flags
        since = {w: at - w.length for w in Window}
        same_type = _p.type == request.type.value
        to_payee = _p.payee_id == request.payee_id
        columns: list[Any] = []
        for window in Window:
            inside = sa.and_(same_type, _p.at > since[window])
            columns += [
                sa.func.sum(sa.case((inside, _p.amount), else_=0)),
                sa.func.count(sa.case((inside, 1))),
                sa.func.sum(sa.case((sa.and_(inside, to_payee), _p.amount), else_=0)),
                sa.func.count(sa.case((sa.and_(inside, to_payee), 1))),
            ]
        earliest = min(since.values())
        if flags.layering:
            layering_since = at - timedelta(minutes=flags.layering.window_minutes)
            earliest = min(earliest, layering_since)
            cash_in = sa.and_(_p.type == PaymentType.CASH_IN.value, _p.at > layering_since)
            columns.append(sa.func.sum(sa.case((cash_in, _p.amount), else_=0)))
        else:
            columns.append(sa.literal_column("0"))
        paid = risk_payments.alias("paid")
        known = sa.exists().where(
            paid.c.payer_id == request.payer_id,
            paid.c.payee_id == request.payee_id,
            paid.c.status.in_(COUNTED),
        )
        device = (
            sa.select(risk_devices.c.first_seen_at)
            .where(risk_devices.c.payer_id == request.payer_id, risk_devices.c.device_id == request.device_id)
            .scalar_subquery()
        )
        aggregates = sa.select(*columns, known.label("known"), device.label("device")).where(
            _p.payer_id == request.payer_id, _COUNTED, _p.at > earliest
        )
        row = (await conn.execute(aggregates)).one()
        payer_usage, recipient_usage = {}, {}
        for i, window in enumerate(Window):
            payer_usage[window] = Usage(amount=_int(row[4 * i]), count=_int(row[4 * i + 1]))
            recipient_usage[window] = Usage(amount=_int(row[4 * i + 2]), count=_int(row[4 * i + 3]))
        recent_cash_in = _int(row[4 * len(Window)])

        lists = [
            sa.select(
                sa.literal_column("'h'").label("k"),
                sa.cast(sa.null(), sa.String).label("v"),
                risk_payer_hours.c.hour.label("a"),
                risk_payer_hours.c.count.label("b"),
                risk_payer_hours.c.amount.label("c"),
            ).where(risk_payer_hours.c.payer_id == request.payer_id)
        ]
        zero: sa.ColumnElement[Any] = sa.literal_column("0")
        if flags.fan_out:
            lists.append(
                sa.select(sa.literal_column("'r'"), _p.payee_id, zero, zero, zero)
                .where(_p.payer_id == request.payer_id, _COUNTED)
                .where(_p.at > at - timedelta(minutes=flags.fan_out.window_minutes))
                .where(_p.type.in_(_types(flags.fan_out.applies_to)))
                .distinct()
            )
        if flags.structuring:
            lists.append(
                sa.select(sa.literal_column("'s'"), sa.cast(sa.null(), sa.String), _p.amount, zero, zero)
                .where(_p.payer_id == request.payer_id, _COUNTED, same_type)
                .where(_p.at > at - flags.structuring.window.length)
            )
        if flags.fan_in_mule:
            lists.append(
                sa.select(sa.literal_column("'f'"), _p.payer_id, zero, zero, zero)
                .where(to_payee, _COUNTED)
                .where(_p.at > at - timedelta(minutes=flags.fan_in_mule.window_minutes))
                .where(_p.type.in_(_types(flags.fan_in_mule.applies_to)))
                .distinct()
            )
        hours, hour_amounts = [0] * 24, [0] * 24
        recipients: set[str] = set()
        senders: set[str] = set()
        amounts: list[int] = []
        for kind, value, a, b, c in (await conn.execute(sa.union_all(*lists))).all():
            if kind == "h":
                hours[int(a)], hour_amounts[int(a)] = int(b), int(c)
            elif kind == "r":
                recipients.add(value)
            elif kind == "s":
                amounts.append(int(a))
            else:
                senders.add(value)
        return RiskContext(
            payer_usage=payer_usage,
            recipient_usage=recipient_usage,
            device_first_seen=row.device,
            known_recipient=bool(row.known),
            recent_recipients=frozenset(recipients),
            recent_senders_to_payee=frozenset(senders),
            recent_amounts=tuple(amounts),
            recent_cash_in=recent_cash_in,
            hour_histogram=tuple(hours),
            hour_amounts=tuple(hour_amounts),
        )

    # --- assess and reserve ----------------------------------------------------------------

    async def assess_and_reserve(
        self, payment_id: str, request: RiskRequest, *, connection: AsyncConnection | None = None
    ) -> Reservation:
        """Assess `request` under the current policy and record it, atomically per payer: an
        allowed payment is `reserved`, a reviewed one `held` (both count in the windows from now
        on), a denied one `denied` (kept for the record, counts nowhere). The payer's device is
        noted in every case. Idempotent by `payment_id`: the same id again returns the first
        decision (`replayed`); the same id for another payer, payee, amount, currency or type
        raises `ReservationError` and writes nothing."""
        if not payment_id or len(payment_id) > 64:
            raise ReservationError("payment_id must be 1 to 64 characters")
        policy = self._policies.current()
        started = time.perf_counter()
        with _tracer.start_as_current_span("risk.assess_and_reserve") as span:
            async with self._transaction(connection) as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(_LOCK_PAYER, {"namespace": RISK_LOCK_NAMESPACE, "payer": request.payer_id})
                existing = (
                    (await conn.execute(sa.select(risk_payments).where(_p.payment_id == payment_id)))
                    .mappings()
                    .one_or_none()
                )
                if existing is not None:
                    if not _same_request(existing, request):
                        raise ReservationError("payment id already assessed for a different request")
                    reservation = Reservation(
                        payment_id, _decision(existing), ReservationStatus(existing["status"]), replayed=True
                    )
                else:
                    context = await self._context(conn, request, policy)
                    decision = assess(request, context, policy)
                    reservation = Reservation(payment_id, decision, ReservationStatus.for_outcome(decision.outcome))
                    await self._record(conn, reservation, request)
            span.set_attribute("kora.risk.outcome", reservation.decision.outcome.label)
            span.set_attribute("kora.risk.policy_version", reservation.decision.policy_version)
            span.set_attribute("kora.risk.replayed", reservation.replayed)
        logger.bind(
            payment_id=payment_id,
            outcome=reservation.decision.outcome.label,
            rules=sorted(reservation.decision.rules),
            policy_version=reservation.decision.policy_version,
            replayed=reservation.replayed,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        ).debug("risk assessed")
        return reservation

    async def _record(self, conn: AsyncConnection, reservation: Reservation, request: RiskRequest) -> None:
        decision, now = reservation.decision, self._clock.now()
        await conn.execute(
            risk_payments.insert().values(
                payment_id=reservation.payment_id,
                payer_id=request.payer_id,
                payee_id=request.payee_id,
                type=request.type.value,
                amount=request.amount,
                currency=request.currency,
                device_id=request.device_id,
                at=request.at,
                status=reservation.status.value,
                outcome=decision.outcome.label,
                score=decision.score,
                policy_version=decision.policy_version,
                reasons=[reason.as_dict() for reason in decision.reasons],
                updated_at=now,
            )
        )
        await conn.execute(
            self._insert(risk_devices)
            .values(payer_id=request.payer_id, device_id=request.device_id, first_seen_at=request.at)
            .on_conflict_do_nothing(index_elements=["payer_id", "device_id"])
        )
        if reservation.status.counts:
            await self._add_hour(conn, request.payer_id, request.at, request.amount)

    async def _add_hour(self, conn: AsyncConnection, payer_id: str, at: datetime, amount: int) -> None:
        h = risk_payer_hours.c
        await conn.execute(
            self._insert(risk_payer_hours)
            .values(payer_id=payer_id, hour=at.hour, count=1, amount=amount)
            .on_conflict_do_update(
                index_elements=["payer_id", "hour"], set_={"count": h.count + 1, "amount": h.amount + amount}
            )
        )

    # --- commit and release ----------------------------------------------------------------

    async def commit(self, payment_id: str, *, connection: AsyncConnection | None = None) -> ReservationStatus:
        """The payment was captured: its reservation counts for good. Idempotent; committing a
        released or denied payment, or an unknown one, raises `ReservationError`."""
        async with self._transaction(connection) as conn:
            moved = await conn.execute(
                risk_payments.update()
                .where(_p.payment_id == payment_id, _p.status.in_(("reserved", "held")))
                .values(status=ReservationStatus.COMMITTED.value, updated_at=self._clock.now())
            )
            if moved.rowcount == 1:
                return ReservationStatus.COMMITTED
            return committed(await self._status(conn, payment_id))

    async def release(self, payment_id: str, *, connection: AsyncConnection | None = None) -> ReservationStatus:
        """The payment failed or was rejected: it no longer counts in any window (nor in the
        payer's hours). Idempotent; releasing a denied payment changes nothing; releasing a
        committed payment, or an unknown one, raises `ReservationError`."""
        async with self._transaction(connection) as conn:
            moved = (
                await conn.execute(
                    risk_payments.update()
                    .where(_p.payment_id == payment_id, _p.status.in_(("reserved", "held")))
                    .values(status=ReservationStatus.RELEASED.value, updated_at=self._clock.now())
                    .returning(_p.payer_id, _p.at, _p.amount)
                )
            ).one_or_none()
            if moved is not None:
                h = risk_payer_hours.c
                await conn.execute(
                    risk_payer_hours.update()
                    .where(h.payer_id == moved.payer_id, h.hour == moved.at.hour)
                    .values(count=h.count - 1, amount=h.amount - moved.amount)
                )
                return ReservationStatus.RELEASED
            return released(await self._status(conn, payment_id))

    async def status(self, payment_id: str) -> ReservationStatus | None:
        """The reservation's status, or None if risk never saw the payment."""
        async with self._engine.connect() as conn:
            found = (await conn.execute(sa.select(_p.status).where(_p.payment_id == payment_id))).scalar()
        return None if found is None else ReservationStatus(found)

    async def _status(self, conn: AsyncConnection, payment_id: str) -> ReservationStatus:
        found = (await conn.execute(sa.select(_p.status).where(_p.payment_id == payment_id))).scalar()
        if found is None:
            raise ReservationError("no risk reservation for this payment")
        return ReservationStatus(found)
