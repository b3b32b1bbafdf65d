"""SqlAuditTrail.record_many (the audit half of group commit) on the migrated schema: one lock
round for every chain of the batch, taken in ascending order, so concurrent batches over
overlapping chains, in any order of subjects, never deadlock; the chains stay gapless and
verify; the records of one batch on one chain are consecutive and in the batch's order."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.audit import AuditEvent, SqlAuditTrail, audit_log, verify_audit_chain
from kora.audit.domain import chain_for
from kora.kernel import FixedClock
from kora.platform.db import create_engine
from kora.platform.uow import SqlUnitOfWork

KEY = b"integration-audit-key-32-bytes!!"
CHAINS = 16
SUBJECTS = [f"payment:p{i:03d}" for i in range(48)]


class Abandoned(Exception):
    """A transaction given up after its audit records were written (rolled back)."""


@pytest.fixture
async def pg_engine(migrated_postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_postgres_url, pool_size=40)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sqlite_engine_migrated(migrated_sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_sqlite_url)
    yield engine
    await engine.dispose()


def events(txn: int, subjects: list[str]) -> list[AuditEvent]:
    return [
        AuditEvent(
            actor=f"user:u{txn}",
            action="payment.p2p.settled",
            subject=subject,
            correlation_id=f"txn-{txn:03d}",
            details={"seq": seq, "txn": txn, "amount": 100 + seq, "currency": "XOF"},
        )
        for seq, subject in enumerate(subjects)
    ]


async def all_rows(engine: AsyncEngine) -> list[sa.Row[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(audit_log).order_by(audit_log.c.chain, audit_log.c.position))).all())


async def verify(engine: AsyncEngine) -> dict[str, object]:
    async with engine.connect() as conn:
        report = await verify_audit_chain(conn, key=KEY, chains=CHAINS)
    return report.as_dict()


def seq_of(row: sa.Row[tuple[object, ...]]) -> int:
    """The record's place in its batch (details are stored as canonical JSON text)."""
    details = row.details
    parsed = json.loads(details) if isinstance(details, str) else details
    assert isinstance(parsed, dict)
    return int(parsed["seq"])


def assert_gapless_and_batches_consecutive(rows: list[sa.Row[tuple[object, ...]]]) -> None:
    positions: dict[int, list[int]] = defaultdict(list)
    per_batch_chain: dict[tuple[object, int], list[tuple[int, int]]] = defaultdict(list)
    for row in rows:
        positions[row.chain].append(row.position)
        per_batch_chain[(row.correlation_id, row.chain)].append((row.position, seq_of(row)))
    for chain, chain_positions in positions.items():
        assert chain_positions == list(range(1, len(chain_positions) + 1)), f"chain {chain} has a gap"
    for (batch, chain), found in per_batch_chain.items():
        found.sort()
        ps = [p for p, _ in found]
        assert ps == list(range(ps[0], ps[0] + len(ps))), f"{batch} interleaved on chain {chain}"
        seqs = [s for _, s in found]
        assert seqs == sorted(seqs), f"{batch} out of order on chain {chain}"


async def test_one_batch_on_one_chain_is_consecutive_and_in_order(pg_engine: AsyncEngine) -> None:
    same_chain = [s for s in SUBJECTS if chain_for(s, CHAINS) == chain_for(SUBJECTS[0], CHAINS)]
    assert len(same_chain) >= 2
    subjects = [*SUBJECTS[:10], *same_chain, SUBJECTS[3], SUBJECTS[3]]  # repeats too
    async with SqlUnitOfWork(pg_engine) as uow:
        await SqlAuditTrail(uow.connection, key=KEY, clock=FixedClock(), chains=CHAINS).record_many(events(1, subjects))
        await uow.commit()
    rows = await all_rows(pg_engine)
    assert len(rows) == len(subjects)
    assert_gapless_and_batches_consecutive(rows)
    by_seq = sorted(rows, key=seq_of)
    assert [r.subject for r in by_seq] == subjects
    for row, subject in zip(by_seq, subjects, strict=True):
        assert row.chain == chain_for(subject, CHAINS)
    assert (await verify(pg_engine))["ok"] is True


async def test_concurrent_batches_over_overlapping_chains_never_deadlock(pg_engine: AsyncEngine) -> None:
    rng = random.Random(20_240_611)
    plans: list[tuple[int, list[str], str]] = []
    for txn in range(40):
        subjects = rng.sample(SUBJECTS, rng.randint(2, 24))  # overlapping chain sets, any order
        if txn % 5 == 0:
            subjects.reverse()
        # Most use record_many; some write a single record with `record` (the single-chain lock
        # must be the same lock as the batch's); a few write and then roll back (no gap left).
        # Not mixed in: one transaction calling `record` on several chains — taken one at a
        # time, in any order, those locks can deadlock against a batch's ascending round.
        mode = "single" if txn % 6 == 1 else "abandon" if txn % 7 == 3 else "batch"
        plans.append((txn, subjects, mode))

    async def run(txn: int, subjects: list[str], mode: str) -> int:
        clock = FixedClock()
        clock.advance(timedelta(seconds=txn))
        async with SqlUnitOfWork(pg_engine) as uow:
            trail = SqlAuditTrail(uow.connection, key=KEY, clock=clock, chains=CHAINS)
            batch = events(txn, subjects)
            if mode == "single":
                event = batch[0]
                await trail.record(
                    actor=event.actor,
                    action=event.action,
                    subject=event.subject,
                    correlation_id=event.correlation_id,
                    details=event.details,
                )
                written = 1
            else:
                await trail.record_many(batch)
                written = len(batch)
            await asyncio.sleep(0.005)  # hold the chain locks while others queue up behind them
            if mode == "abandon":
                raise Abandoned
            await uow.commit()
        return written

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(run(*plan) for plan in plans), return_exceptions=True), timeout=60
    )
    unexpected = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, Abandoned)]
    assert unexpected == []  # no deadlock, no chain conflict
    committed = sum(o for o in outcomes if isinstance(o, int))
    assert sum(isinstance(o, Abandoned) for o in outcomes) == sum(1 for *_, m in plans if m == "abandon") > 0

    rows = await all_rows(pg_engine)
    assert len(rows) == committed
    assert_gapless_and_batches_consecutive(rows)
    assert len({row.chain for row in rows}) == CHAINS
    abandoned = {f"txn-{t:03d}" for t, _, m in plans if m == "abandon"}
    assert not abandoned & {row.correlation_id for row in rows}
    report = await verify(pg_engine)
    assert report["ok"] is True, report
    assert report["records_checked"] == committed


async def test_many_batches_on_every_chain_in_opposite_orders(pg_engine: AsyncEngine) -> None:
    """The worst case for lock ordering: every batch touches every chain, half of them in
    reverse order of subjects."""
    ascending = sorted(SUBJECTS, key=lambda s: chain_for(s, CHAINS))

    async def run(txn: int) -> None:
        subjects = ascending if txn % 2 else list(reversed(ascending))
        async with SqlUnitOfWork(pg_engine) as uow:
            await SqlAuditTrail(uow.connection, key=KEY, clock=FixedClock(), chains=CHAINS).record_many(
                events(txn, subjects)
            )
            await asyncio.sleep(0.002)
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(*(run(t) for t in range(24))), timeout=60)
    rows = await all_rows(pg_engine)
    assert len(rows) == 24 * len(SUBJECTS)
    assert_gapless_and_batches_consecutive(rows)
    report = await verify(pg_engine)
    assert (report["ok"], report["records_checked"]) == (True, 24 * len(SUBJECTS))


async def test_record_many_on_sqlite_keeps_the_same_guarantees(sqlite_engine_migrated: AsyncEngine) -> None:
    engine = sqlite_engine_migrated
    for txn in range(3):
        async with SqlUnitOfWork(engine) as uow:
            trail = SqlAuditTrail(uow.connection, key=KEY, clock=FixedClock(), chains=CHAINS)
            await trail.record_many(events(txn, SUBJECTS[txn : txn + 20]))
            await uow.commit()
    rows = await all_rows(engine)
    assert len(rows) == 60
    assert_gapless_and_batches_consecutive(rows)
    assert (await verify(engine))["ok"] is True


async def test_an_empty_batch_writes_nothing(pg_engine: AsyncEngine) -> None:
    async with SqlUnitOfWork(pg_engine) as uow:
        await SqlAuditTrail(uow.connection, key=KEY, clock=FixedClock(), chains=CHAINS).record_many([])
        await uow.commit()
    assert await all_rows(pg_engine) == []
