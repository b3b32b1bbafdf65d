"""The SQL audit trail on real SQLite and PostgreSQL: concurrent appends stay gapless, the
database refuses UPDATE/DELETE, and verification pinpoints tampering done behind its back."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.audit import (
    POSTGRES_DDL,
    SQLITE_DDL,
    SQLITE_DROP_DDL,
    AuditEntry,
    InMemoryAuditTrail,
    InvalidAuditRecordError,
    SqlAuditTrail,
    audit_log,
    chain_heads,
    list_audit,
    verify_audit_chain,
)
from kora.audit.adapters.sql import entry_row
from kora.audit.domain import HASH_MISMATCH, POSITION_GAP, TRUNCATED, chain_for
from kora.kernel import FixedClock
from kora.platform.db import create_engine, metadata
from kora.platform.uow import SqlUnitOfWork

KEY = b"integration-audit-key-32-bytes!!"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_sqlite_url: str) -> str:
    if request.param == "sqlite":
        return tmp_sqlite_url
    url: str = request.getfixturevalue("postgres_database")
    return url


async def open_audit_database(url: str) -> AsyncEngine:
    """audit_log as the migration will create it: the table, then the append-only triggers."""
    engine = create_engine(url, pool_size=25)
    ddl = POSTGRES_DDL if engine.dialect.name == "postgresql" else SQLITE_DDL
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all, tables=[audit_log])
        for statement in ddl:
            await conn.execute(sa.text(statement))
    return engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await open_audit_database(database_url)
    yield engine
    await engine.dispose()


async def allow_tampering(engine: AsyncEngine) -> None:
    """What it takes to edit history: the table owner disabling the triggers."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            for statement in SQLITE_DROP_DDL:
                await conn.execute(sa.text(statement))


async def record_many(engine: AsyncEngine, subjects: list[str], *, per_subject: int, chains: int = 4) -> None:
    clock = FixedClock()
    async with engine.begin() as conn:
        trail = SqlAuditTrail(conn, key=KEY, clock=clock, chains=chains)
        for step in range(per_subject):
            for subject in subjects:
                clock.advance(timedelta(seconds=1))
                await trail.record(
                    actor="system",
                    action="payment.step.done",
                    subject=subject,
                    correlation_id=f"corr-{subject}",
                    details={"step": step, "amount": 1000 * step, "currency": "XOF"},
                )


async def chain_rows(conn: AsyncConnection, chain: int) -> list[sa.Row[tuple[object, ...]]]:
    query = sa.select(audit_log).where(audit_log.c.chain == chain).order_by(audit_log.c.position)
    return list((await conn.execute(query)).all())


async def verify(engine: AsyncEngine, **options: object) -> dict[str, object]:
    async with engine.connect() as conn:
        report = await verify_audit_chain(conn, key=KEY, **options)  # type: ignore[arg-type]
    return report.as_dict()


async def test_concurrent_transactions_append_gapless_chains(engine: AsyncEngine) -> None:
    subjects = [f"payment:p{i}" for i in range(6)]  # 6 subjects on 4 chains: some share a chain
    assert len({chain_for(s, 4) for s in subjects}) < len(subjects)

    async def transfer(n: int) -> None:
        async with SqlUnitOfWork(engine) as uow:
            trail = SqlAuditTrail(uow.connection, key=KEY, clock=FixedClock(), chains=4)
            for step in ("authorized", "captured"):
                await trail.record(
                    actor=f"user:u{n}",
                    action=f"payment.p2p.{step}",
                    subject=subjects[n % len(subjects)],
                    correlation_id=f"transfer-{n}",
                    details={"amount": n},
                )
                await asyncio.sleep(0.001)  # keep the transaction open while others queue up
            await uow.commit()

    await asyncio.gather(*(transfer(n) for n in range(50)))

    report = await verify(engine, chains=4)
    assert report == {
        "ok": True,
        "records_checked": 100,
        "chains_checked": 4,
        "first_broken": None,
        "broken_chains": [],
    }
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(audit_log))).all()
    positions: dict[int, list[int]] = defaultdict(list)
    per_transfer: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        positions[row.chain].append(row.position)
        per_transfer[row.correlation_id].append(row.position)
    for chain_positions in positions.values():
        assert sorted(chain_positions) == list(range(1, len(chain_positions) + 1))
    # The chain stays locked until commit, so one transaction's records are consecutive.
    assert all(sorted(p)[1] - sorted(p)[0] == 1 for p in per_transfer.values())


async def test_records_round_trip_and_are_listed_for_support(engine: AsyncEngine) -> None:
    clock = FixedClock()
    async with engine.begin() as conn:
        trail = SqlAuditTrail(conn, key=KEY, clock=clock)
        first = await trail.append(
            actor="user:u1",
            action="payment.p2p.captured",
            subject="payment:p1",
            correlation_id="req-1",
            details={"amount": 5000, "currency": "XOF", "internal": True, "note": None},
        )
        clock.advance(timedelta(seconds=1))
        second = await trail.append(
            actor="admin:a1", action="payment.p2p.reversed", subject="payment:p1", correlation_id="req-2"
        )
        clock.advance(timedelta(seconds=1))
        await trail.record(actor="user:u2", action="auth.login.failed", subject="user:u2", correlation_id="req-3")
    assert (first.position, second.position, second.prev_hash) == (1, 2, first.hash)
    async with engine.connect() as conn:
        assert await list_audit(conn, subject="payment:p1") == [second, first]
        assert await list_audit(conn, correlation_id="req-1") == [first]
        assert await list_audit(conn, subject="payment:p1", correlation_id="req-2") == [second]
        assert [e.action for e in await list_audit(conn, limit=2)] == [
            "auth.login.failed",
            "payment.p2p.reversed",
        ]
        with pytest.raises(ValueError, match="limit"):
            await list_audit(conn, limit=0)
    assert first.details_dict() == {"amount": 5000, "currency": "XOF", "internal": True, "note": None}
    assert (await verify(engine))["ok"] is True


async def test_pii_is_refused_before_anything_is_written(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        trail = SqlAuditTrail(conn, key=KEY, clock=FixedClock())
        with pytest.raises(InvalidAuditRecordError):
            await trail.record(actor="system", action="auth.otp.sent", subject="user:221771234567", correlation_id=None)
        count = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one()
    assert count == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET details = '{}'",
        "UPDATE audit_log SET outcome = 'failure' WHERE position = 1",
        "DELETE FROM audit_log WHERE position = 1",
        "DELETE FROM audit_log",
    ],
)
async def test_the_database_refuses_update_and_delete(engine: AsyncEngine, statement: str) -> None:
    await record_many(engine, ["payment:p1"], per_subject=2)
    with pytest.raises(sa.exc.IntegrityError, match="audit_log is append-only"):
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement))
    assert (await verify(engine))["records_checked"] == 2


@pytest.mark.postgres
async def test_postgres_refuses_truncate(postgres_database: str) -> None:
    engine = await open_audit_database(postgres_database)
    try:
        await record_many(engine, ["payment:p1"], per_subject=1)
        with pytest.raises(sa.exc.IntegrityError, match="audit_log is append-only: TRUNCATE refused"):
            async with engine.begin() as conn:
                await conn.execute(sa.text("TRUNCATE audit_log"))
    finally:
        await engine.dispose()


async def test_an_altered_row_is_reported_as_the_first_broken_link(engine: AsyncEngine) -> None:
    await record_many(engine, ["payment:p1", "payment:p2", "payment:p3"], per_subject=5)
    chain = chain_for("payment:p2", 4)
    async with engine.connect() as conn:
        target = (await chain_rows(conn, chain))[2]
    await allow_tampering(engine)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(audit_log)
            .where(audit_log.c.id == target.id)
            .values(details='{"amount":1,"currency":"XOF","step":2}')
        )

    report = await verify(engine)
    assert report["ok"] is False
    assert report["records_checked"] == 15
    first = report["first_broken"]
    assert isinstance(first, dict)
    assert (first["chain"], first["position"], first["record_id"], first["reason"]) == (
        chain,
        3,
        str(target.id),
        HASH_MISMATCH,
    )
    assert report["broken_chains"] == [first]


async def test_a_deleted_middle_row_is_a_position_gap_at_the_next_record(engine: AsyncEngine) -> None:
    await record_many(engine, ["payment:p1"], per_subject=6)
    chain = chain_for("payment:p1", 4)
    async with engine.connect() as conn:
        rows = await chain_rows(conn, chain)
    await allow_tampering(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(audit_log).where(audit_log.c.id == rows[3].id))

    first = (await verify(engine))["first_broken"]
    assert isinstance(first, dict)
    assert (first["chain"], first["position"], first["record_id"], first["reason"]) == (
        chain,
        5,
        str(rows[4].id),
        POSITION_GAP,
    )
    assert first["detail"] == "expected position 4, found 5"


async def test_a_deleted_tail_is_caught_by_exported_chain_heads(engine: AsyncEngine) -> None:
    await record_many(engine, ["payment:p1", "payment:p2"], per_subject=3)
    async with engine.connect() as conn:
        heads = await chain_heads(conn)
        chain = chain_for("payment:p1", 4)
        last = (await chain_rows(conn, chain))[-1]
    assert heads[chain] == (last.position, last.hash)
    assert (await verify(engine, anchors=heads))["ok"] is True

    await allow_tampering(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(audit_log).where(audit_log.c.id == last.id))
    assert (await verify(engine))["ok"] is True  # the chain alone cannot see a missing tail
    first = (await verify(engine, anchors=heads))["first_broken"]
    assert isinstance(first, dict)
    assert (first["chain"], first["position"], first["reason"]) == (chain, last.position, TRUNCATED)


async def test_verification_streams_a_large_trail_in_batches(engine: AsyncEngine) -> None:
    fake = InMemoryAuditTrail(key=KEY, clock=FixedClock(), chains=16)
    for n in range(2500):
        await fake.record(actor="system", action="payment.step.done", subject=f"payment:p{n % 40}", correlation_id=None)
    entries: list[AuditEntry] = fake.records
    async with engine.begin() as conn:
        for start in range(0, len(entries), 500):
            await conn.execute(sa.insert(audit_log), [entry_row(e) for e in entries[start : start + 500]])
    report = await verify(engine, chains=16)
    assert (report["ok"], report["records_checked"], report["chains_checked"]) == (True, 2500, 16)
