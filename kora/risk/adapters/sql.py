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
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from loguru import logger
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock, SystemClock
from kora.observability import get_tracer
from kora.platform.db import UtcDateTime
from kora.risk.adapters.tables import COUNTED, risk_devices, risk_payer_hours, risk_payments
from kora.risk.adapters.transactions import in_transaction
from kora.risk.domain.assessment import assess
from kora.risk.domain.model import Decision, Outcome, PaymentType, Reason, RiskContext, RiskRequest, Usage, Window
from kora.risk.domain.policy import Policy
from kora.risk.domain.reservation import Reservation, ReservationError, ReservationStatus, committed, released
from kora.risk.ports import PolicySource

RISK_LOCK_NAMESPACE = 0x4B52534B  # "KRSK": first key of pg_advisory_xact_lock(int, int)

_LOCK_PAYER = sa.text("SELECT pg_advisory_xact_lock(:namespace, :payer)")


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


def _int(value: Any) -> int:
    return 0 if value is None else int(value)  # PostgreSQL's sum(bigint) is numeric


def _literals(values: Iterable[str]) -> list[Any]:
    """An IN list written into the statement (constants, not an expanding parameter that would
    be re-rendered at every execution)."""
    return [sa.literal_column(f"'{value}'") for value in sorted(values)]


def _types(types: frozenset[PaymentType]) -> list[Any]:
    return _literals(t.value for t in types)


_COUNTED_LIST = _literals(COUNTED)
_COUNTED = _p.status.in_(_COUNTED_LIST)


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


def _listed(value: Any) -> list[Any]:
    """A list aggregate's value: PostgreSQL's array_agg (a list, None when empty) or SQLite's
    json_group_array (a JSON text)."""
    if value is None:
        return []
    return list(json.loads(value)) if isinstance(value, str) else list(value)


def _context_query(policy: Policy, dialect: str) -> sa.Select[Any]:
    """One row: the payer's usage per window (amount, count, and the same towards the payee)
    for the request's type, the cash-in within the layering window, whether the payer paid the
    payee before, the device's first sighting, the lists the flags need (recipients, senders
    to the payee, structuring amounts, the payer's hours) and the payment id's status if any.
    Subqueries read the table under their own alias so none correlates with the outer one."""

    def param(name: str) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=UtcDateTime) if name.startswith(("since", "earliest")) else sa.bindparam(name)

    def aggregate(expr: Any, *, distinct: bool = False) -> Any:
        arg = sa.distinct(expr) if distinct else expr
        return sa.func.array_agg(arg) if dialect == "postgresql" else sa.func.json_group_array(arg)

    flags = policy.flags
    same_type = _p.type == param("type")
    to_payee = _p.payee_id == param("payee")
    columns: list[Any] = []
    for window in Window:
        inside = sa.and_(same_type, _p.at > param(f"since_{window.value}"))
        columns += [
            sa.func.sum(sa.case((inside, _p.amount), else_=0)),
            sa.func.count(sa.case((inside, 1))),
            sa.func.sum(sa.case((sa.and_(inside, to_payee), _p.amount), else_=0)),
            sa.func.count(sa.case((sa.and_(inside, to_payee), 1))),
        ]
    if flags.layering:
        cash_in = sa.and_(_p.type == PaymentType.CASH_IN.value, _p.at > param("since_layering"))
        columns.append(sa.func.sum(sa.case((cash_in, _p.amount), else_=0)).label("cash_in"))
    else:
        columns.append(sa.literal_column("0").label("cash_in"))

    paid = risk_payments.alias("paid")
    columns.append(
        sa.exists()
        .where(paid.c.payer_id == param("payer"), paid.c.payee_id == param("payee"), paid.c.status.in_(_COUNTED_LIST))
        .label("known")
    )
    d = risk_devices.c
    columns.append(
        sa.select(d.first_seen_at)
        .where(d.payer_id == param("payer"), d.device_id == param("device"))
        .scalar_subquery()
        .label("device")
    )
    h = risk_payer_hours.c
    entry = sa.cast(h.hour, sa.String) + ":" + sa.cast(h.count, sa.String) + ":" + sa.cast(h.amount, sa.String)
    columns.append(sa.select(aggregate(entry)).where(h.payer_id == param("payer")).scalar_subquery().label("hours"))
    none: Any = sa.cast(sa.null(), sa.String)
    if flags.fan_out:
        r = risk_payments.alias("fan_out")
        columns.append(
            sa.select(aggregate(r.c.payee_id, distinct=True))
            .where(r.c.payer_id == param("payer"), r.c.status.in_(_COUNTED_LIST), r.c.at > param("since_fan_out"))
            .where(r.c.type.in_(_types(flags.fan_out.applies_to)))
            .scalar_subquery()
            .label("recipients")
        )
    else:
        columns.append(none.label("recipients"))
    if flags.fan_in_mule:
        f = risk_payments.alias("fan_in")
        columns.append(
            sa.select(aggregate(f.c.payer_id, distinct=True))
            .where(f.c.payee_id == param("payee"), f.c.status.in_(_COUNTED_LIST), f.c.at > param("since_fan_in"))
            .where(f.c.type.in_(_types(flags.fan_in_mule.applies_to)))
            .scalar_subquery()
            .label("senders")
        )
    else:
        columns.append(none.label("senders"))
    if flags.structuring:
        s = risk_payments.alias("structuring")
        columns.append(
            sa.select(aggregate(s.c.amount))
            .where(s.c.payer_id == param("payer"), s.c.status.in_(_COUNTED_LIST), s.c.type == param("type"))
            .where(s.c.at > param("since_structuring"))
            .scalar_subquery()
            .label("amounts")
        )
    else:
        columns.append(none.label("amounts"))
    e = risk_payments.alias("existing")
    columns.append(
        sa.select(e.c.status).where(e.c.payment_id == param("payment_id")).scalar_subquery().label("existing")
    )
    return sa.select(*columns).where(_p.payer_id == param("payer"), _COUNTED, _p.at > param("earliest"))


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
        query = _context_query(policy, self._engine.dialect.name)
        self._query = (policy, query)
        return query

    async def _context(
        self, conn: AsyncConnection, request: RiskRequest, policy: Policy, payment_id: str = ""
    ) -> tuple[RiskContext, str | None]:
        """The context of `request`, and the status of `payment_id` if risk has seen it."""
        at, flags = request.at, policy.flags
        params: dict[str, Any] = {f"since_{w.value}": at - w.length for w in Window}
        layering = flags.layering.window_minutes if flags.layering else 0
        fan_out = flags.fan_out.window_minutes if flags.fan_out else 0
        fan_in = flags.fan_in_mule.window_minutes if flags.fan_in_mule else 0
        params.update(
            payer=request.payer_id,
            payee=request.payee_id,
            type=request.type.value,
            device=request.device_id,
            payment_id=payment_id,
            since_layering=at - timedelta(minutes=layering),
            since_fan_out=at - timedelta(minutes=fan_out),
            since_fan_in=at - timedelta(minutes=fan_in),
            since_structuring=at - (flags.structuring.window.length if flags.structuring else timedelta(0)),
            earliest=min(at - max(w.length for w in Window), at - timedelta(minutes=layering)),
        )
        row = (await conn.execute(self._context_query(policy), params)).one()
        usage = [_int(v) for v in row[: 4 * len(Window)]]
        hours, hour_amounts = [0] * 24, [0] * 24
        for entry in _listed(row.hours):
            hour, count, amount = (int(part) for part in str(entry).split(":"))
            hours[hour], hour_amounts[hour] = count, amount
        context = RiskContext(
            payer_usage={w: Usage(amount=usage[4 * i], count=usage[4 * i + 1]) for i, w in enumerate(Window)},
            recipient_usage={w: Usage(amount=usage[4 * i + 2], count=usage[4 * i + 3]) for i, w in enumerate(Window)},
            device_first_seen=row.device,
            known_recipient=bool(row.known),
            recent_recipients=frozenset(str(v) for v in _listed(row.recipients)),
            recent_senders_to_payee=frozenset(str(v) for v in _listed(row.senders)),
            recent_amounts=tuple(int(v) for v in _listed(row.amounts)),
            recent_cash_in=_int(row.cash_in),
            hour_histogram=tuple(hours),
            hour_amounts=tuple(hour_amounts),
        )
        return context, row.existing

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
        if not payment_id or max(map(len, (payment_id, request.payer_id, request.payee_id, request.device_id))) > 64:
            raise ReservationError("payment, payer, payee and device ids must be 1 to 64 characters")
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
                    reservation = Reservation(payment_id, decision, ReservationStatus.for_outcome(decision.outcome))
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

    async def _replay(self, conn: AsyncConnection, payment_id: str, request: RiskRequest) -> Reservation:
        existing = (await conn.execute(sa.select(risk_payments).where(_p.payment_id == payment_id))).mappings().one()
        if not _same_request(existing, request):
            raise ReservationError("payment id already assessed for a different request")
        return Reservation(payment_id, _decision(existing), ReservationStatus(existing["status"]), replayed=True)

    async def _record(self, conn: AsyncConnection, reservation: Reservation, request: RiskRequest) -> None:
        decision, now = reservation.decision, self._clock.now()
        reasons = [reason.as_dict() for reason in decision.reasons]
        if conn.dialect.name == "postgresql":
            # one round trip: the payment, the device and the hour in one statement
            await conn.execute(
                _RECORD_PG,
                {
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
                    "reasons": json.dumps(reasons),
                    "updated_at": now,
                    "hour": request.at.hour,
                    "counts": reservation.status.counts,
                },
            )
            return
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
                reasons=reasons,
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
