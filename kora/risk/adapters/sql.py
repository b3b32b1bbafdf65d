"""`SqlRiskActivity`: the payer and payee history in the core's database (tables in
`kora.risk.adapters.tables`, migration 0010), answering the same context as
`InMemoryRiskActivity`, and reserving a payment's usage atomically with its assessment.

Atomic velocity: `assess_and_reserve` serialises the payer before it reads the windows —
`pg_advisory_xact_lock(RISK_LOCK_NAMESPACE, crc32(payer_id))` on PostgreSQL, the database
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

import json
import time
import zlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from loguru import logger
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock, SystemClock
from kora.observability import get_tracer
from kora.risk.adapters.sql_context import (
    context_params,
    context_query,
    contexts_params,
    contexts_query,
    row_context,
)
from kora.risk.adapters.tables import risk_devices, risk_payer_hours, risk_payments
from kora.risk.adapters.transactions import in_transaction
from kora.risk.domain.assessment import assess
from kora.risk.domain.model import Decision, Outcome, Reason, RiskContext, RiskRequest
from kora.risk.domain.policy import Policy
from kora.risk.domain.reservation import Reservation, ReservationError, ReservationStatus, committed, released
from kora.risk.ports import PolicySource

RISK_LOCK_NAMESPACE = 0x4B52534B  # "KRSK": first key of pg_advisory_xact_lock(int, int)

_LOCK_PAYER = sa.text("SELECT pg_advisory_xact_lock(:namespace, :payer)")
# Several payers' locks in one round trip, in key order (the subquery's order is the order the
# locks are taken in), so two transactions never take two payers' locks in opposite orders.
_LOCK_PAYERS = sa.text(
    "SELECT count(pg_advisory_xact_lock(:namespace, k)) FROM "
    "(SELECT DISTINCT k FROM unnest(CAST(:payers AS integer[])) AS k ORDER BY k) AS ordered"
)


def payer_lock_key(payer_id: str) -> int:
    """The payer's advisory lock key: CRC-32 of the id, as a signed 32-bit integer."""
    return zlib.crc32(payer_id.encode()) - 2**31


# PostgreSQL's write of an assessed payment, its device and its hour in one statement.
_RECORD_PG = sa.text(
    "WITH payment AS (INSERT INTO risk_payments (payment_id, payer_id, payee_id, type, amount, currency, "
    "device_id, at, status, outcome, score, policy_version, reasons, updated_at) VALUES (:payment_id, "
    ":payer_id, :payee_id, :type, :amount, :currency, :device_id, :at, :status, :outcome, :score, "
    ":policy_version, CAST(:reasons AS JSON), :updated_at)), "
    "device AS (INSERT INTO risk_devices (payer_id, device_id, first_seen_at) VALUES (:payer_id, :device_id, :at) "
    "ON CONFLICT (payer_id, device_id) DO NOTHING) "
    "INSERT INTO risk_payer_hours (payer_id, hour, count, amount) "
    "SELECT CAST(:payer_id AS VARCHAR), CAST(:hour AS SMALLINT), 1, CAST(:amount AS BIGINT) "
    "WHERE CAST(:counts AS BOOLEAN) "
    "ON CONFLICT (payer_id, hour) DO UPDATE SET count = risk_payer_hours.count + 1, "
    "amount = risk_payer_hours.amount + EXCLUDED.amount"
)
_tracer = get_tracer("kora.risk")
_p = risk_payments.c


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


def _segments(items: Sequence[tuple[str, RiskRequest]]) -> list[list[tuple[str, RiskRequest]]]:
    """`items` cut where a payment's payer or payee is a party of an earlier one in the cut."""
    segments: list[list[tuple[str, RiskRequest]]] = [[]]
    parties: set[str] = set()
    for payment_id, request in items:
        if request.payer_id in parties or request.payee_id in parties:
            segments.append([])
            parties = set()
        segments[-1].append((payment_id, request))
        parties |= {request.payer_id, request.payee_id}
    return [segment for segment in segments if segment]


def _payment_row(reservation: Reservation, request: RiskRequest, now: datetime) -> dict[str, Any]:
    decision = reservation.decision
    return {
        "payment_id": reservation.payment_id,
        "payer_id": request.payer_id,
        "payee_id": request.payee_id,
        "type": request.type.value,
        "amount": request.amount,
        "currency": request.currency,
        "device_id": request.device_id,
        "at": request.at,
        "status": reservation.status.value,
        "outcome": decision.outcome.label,
        "score": decision.score,
        "policy_version": decision.policy_version,
        "reasons": [reason.as_dict() for reason in decision.reasons],
        "updated_at": now,
    }


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
        self._query: tuple[Policy, sa.Select[Any]] | None = None
        # the batch statements of the current policy, per batch size (compiling one costs ms)
        self._contexts_policy: Policy | None = None
        self._contexts_queries: dict[int, sa.Select[Any]] = {}

    @property
    def policy_version(self) -> str:
        return self._policies.current().version

    def _transaction(self, connection: AsyncConnection | None) -> AbstractAsyncContextManager[AsyncConnection]:
        return in_transaction(self._engine, connection)

    # --- the context ---------------------------------------------------------------------

    async def context_for(
        self, request: RiskRequest, policy: Policy, *, connection: AsyncConnection | None = None
    ) -> RiskContext:
        """The context of `request` (no lock, nothing written): for explaining and replaying a
        decision. The payment path uses `assess_and_reserve`."""
        if connection is not None:
            return (await self._context(connection, request, policy))[0]
        async with self._engine.connect() as conn:
            return (await self._context(conn, request, policy))[0]

    def _context_query(self, policy: Policy) -> sa.Select[Any]:
        """The one statement that reads a request's context under `policy`, built once per
        policy (the request's values are bind parameters)."""
        cached = self._query
        if cached is not None and cached[0] is policy:
            return cached[1]
        query = context_query(policy, self._engine.dialect.name)
        self._query = (policy, query)
        return query

    async def _context(
        self, conn: AsyncConnection, request: RiskRequest, policy: Policy, payment_id: str = ""
    ) -> tuple[RiskContext, str | None]:
        """The context of `request`, and the status of `payment_id` if risk has seen it."""
        row = (await conn.execute(self._context_query(policy), context_params(request, policy, payment_id))).one()
        return row_context(row)

    async def _contexts(
        self, conn: AsyncConnection, items: Sequence[tuple[str, RiskRequest]], policy: Policy
    ) -> list[tuple[RiskContext, str | None]]:
        """The contexts of several requests: one statement on PostgreSQL, one each elsewhere."""
        if conn.dialect.name != "postgresql" or len(items) == 1:
            return [await self._context(conn, request, policy, payment_id) for payment_id, request in items]
        params = [context_params(request, policy, payment_id) for payment_id, request in items]
        if self._contexts_policy is not policy:  # a reloaded policy: new statements
            self._contexts_policy, self._contexts_queries = policy, {}
        query = self._contexts_queries.get(len(items))
        if query is None:
            query = self._contexts_queries[len(items)] = contexts_query(policy, len(items))
        rows = (await conn.execute(query, contexts_params(params))).all()
        return [row_context(row, offset=1) for row in rows]

    # --- assess and reserve ----------------------------------------------------------------

    async def assess_and_reserve(
        self,
        payment_id: str,
        request: RiskRequest,
        *,
        connection: AsyncConnection | None = None,
        settles_now: bool = False,
    ) -> Reservation:
        """Assess `request` under the current policy and record it, atomically per payer: an
        allowed payment is `reserved`, a reviewed one `held` (both count in the windows from now
        on), a denied one `denied` (kept for the record, counts nowhere). The payer's device is
        noted in every case. Idempotent by `payment_id`: the same id again returns the first
        decision (`replayed`); the same id for another payer, payee, amount, currency or type
        raises `ReservationError` and writes nothing.

        `settles_now`: the caller captures an allowed payment in this same transaction (a P2P or
        merchant payment), so it is recorded `committed` at once — one statement fewer than a
        reservation and a commit."""
        self._check_ids(payment_id, request)
        policy = self._policies.current()
        started = time.perf_counter()
        with _tracer.start_as_current_span("risk.assess_and_reserve") as span:
            async with self._transaction(connection) as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(
                        _LOCK_PAYER, {"namespace": RISK_LOCK_NAMESPACE, "payer": payer_lock_key(request.payer_id)}
                    )
                context, seen = await self._context(conn, request, policy, payment_id)
                if seen is not None:
                    reservation = await self._replay(conn, payment_id, request)
                else:
                    decision = assess(request, context, policy)
                    status = ReservationStatus.for_outcome(decision.outcome)
                    if settles_now and status is ReservationStatus.RESERVED:
                        status = ReservationStatus.COMMITTED
                    reservation = Reservation(payment_id, decision, status)
                    try:
                        await self._record(conn, reservation, request)
                    except IntegrityError as exc:
                        # the same payment id recorded meanwhile under another payer's lock
                        raise ReservationError("payment id already assessed for a different request") from exc
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

    @staticmethod
    def _check_ids(payment_id: str, request: RiskRequest) -> None:
        if not payment_id or max(map(len, (payment_id, request.payer_id, request.payee_id, request.device_id))) > 64:
            raise ReservationError("payment, payer, payee and device ids must be 1 to 64 characters")

    async def _replay(self, conn: AsyncConnection, payment_id: str, request: RiskRequest) -> Reservation:
        existing = (await conn.execute(sa.select(risk_payments).where(_p.payment_id == payment_id))).mappings().one()
        if not _same_request(existing, request):
            raise ReservationError("payment id already assessed for a different request")
        return Reservation(payment_id, _decision(existing), ReservationStatus(existing["status"]), replayed=True)

    async def _record(self, conn: AsyncConnection, reservation: Reservation, request: RiskRequest) -> None:
        row = _payment_row(reservation, request, self._clock.now())
        if conn.dialect.name == "postgresql":
            # one round trip: the payment, the device and the hour in one statement
            params = {
                **row,
                "reasons": json.dumps(row["reasons"]),
                "hour": request.at.hour,
                "counts": reservation.status.counts,
            }
            await conn.execute(_RECORD_PG, params)
            return
        await conn.execute(risk_payments.insert().values(**row))
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

    async def assess_and_reserve_many(
        self, items: Sequence[tuple[str, RiskRequest]], *, connection: AsyncConnection
    ) -> list[Reservation]:
        """`assess_and_reserve` for each (payment id, request) of one transaction — a group
        commit — with fewer round trips: every payer's lock first, in one statement; then, per
        segment of payments sharing no payer or payee, the contexts in one statement and the
        writes in one per table; a payment whose payer or payee an earlier one involves starts a
        new segment, so each payment sees its batch-mates exactly as it would one by one.
        Reservations in the order given."""
        for payment_id, request in items:
            self._check_ids(payment_id, request)
        policy = self._policies.current()
        await self.lock_payers([request.payer_id for _, request in items], connection=connection)
        started = time.perf_counter()
        reservations: list[Reservation] = []
        with _tracer.start_as_current_span(
            "risk.assess_and_reserve_many", attributes={"kora.risk.payments": len(items)}
        ):
            for segment in _segments(items):
                contexts = await self._contexts(connection, segment, policy)
                pending: list[tuple[Reservation, RiskRequest]] = []
                for (payment_id, request), (context, seen) in zip(segment, contexts, strict=True):
                    if seen is not None:
                        reservations.append(await self._replay(connection, payment_id, request))
                        continue
                    decision = assess(request, context, policy)
                    reservation = Reservation(payment_id, decision, ReservationStatus.for_outcome(decision.outcome))
                    pending.append((reservation, request))
                    reservations.append(reservation)
                await self._record_many(connection, pending)
        logger.bind(payments=len(items), duration_ms=round((time.perf_counter() - started) * 1000, 3)).debug(
            "risk assessed a batch"
        )
        return reservations

    async def _record_many(self, conn: AsyncConnection, pending: list[tuple[Reservation, RiskRequest]]) -> None:
        """Write assessed payments, their devices and their hours: one statement per table on
        PostgreSQL (SQLAlchemy sends a multi-row VALUES), one by one elsewhere."""
        if len(pending) <= 1 or conn.dialect.name != "postgresql":
            for reservation, request in pending:
                await self._write(conn, reservation, request)
            return
        now = self._clock.now()
        rows = [_payment_row(reservation, request, now) for reservation, request in pending]
        devices = {(r.payer_id, r.device_id): r.at for _, r in pending}
        hours: dict[tuple[str, int], list[int]] = {}
        for reservation, request in pending:
            if reservation.status.counts:
                totals = hours.setdefault((request.payer_id, request.at.hour), [0, 0])
                totals[0] += 1
                totals[1] += request.amount
        try:
            await conn.execute(risk_payments.insert(), rows)
        except IntegrityError as exc:
            raise ReservationError("payment id already assessed for a different request") from exc
        await conn.execute(
            self._insert(risk_devices).on_conflict_do_nothing(index_elements=["payer_id", "device_id"]),
            [{"payer_id": payer, "device_id": device, "first_seen_at": at} for (payer, device), at in devices.items()],
        )
        if hours:
            h = self._insert(risk_payer_hours)
            await conn.execute(
                h.on_conflict_do_update(
                    index_elements=["payer_id", "hour"],
                    set_={
                        "count": risk_payer_hours.c.count + h.excluded.count,
                        "amount": risk_payer_hours.c.amount + h.excluded.amount,
                    },
                ),
                [{"payer_id": p, "hour": hour, "count": c, "amount": a} for (p, hour), (c, a) in hours.items()],
            )

    async def _write(self, conn: AsyncConnection, reservation: Reservation, request: RiskRequest) -> None:
        try:
            await self._record(conn, reservation, request)
        except IntegrityError as exc:
            raise ReservationError("payment id already assessed for a different request") from exc

    async def lock_payers(self, payer_ids: Iterable[str], *, connection: AsyncConnection) -> None:
        """Take several payers' locks in one round trip, in key order (PostgreSQL; on SQLite the
        transaction's write lock already serialises), before `assess_and_reserve_many` reads."""
        if connection.dialect.name != "postgresql":
            return
        keys = sorted({payer_lock_key(payer) for payer in payer_ids})
        if keys:
            await connection.execute(_LOCK_PAYERS, {"namespace": RISK_LOCK_NAMESPACE, "payers": keys})

    async def commit_many(self, payment_ids: Iterable[str], *, connection: AsyncConnection) -> None:
        """`commit` for several captured payments in one statement (a group commit); ids risk
        never reserved are left alone."""
        ids = list(payment_ids)
        if ids:
            await connection.execute(
                risk_payments.update()
                .where(_p.payment_id.in_(ids), _p.status.in_(("reserved", "held")))
                .values(status=ReservationStatus.COMMITTED.value, updated_at=self._clock.now())
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
