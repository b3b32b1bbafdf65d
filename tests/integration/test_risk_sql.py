"""`SqlRiskActivity` on SQLite and PostgreSQL (the real migration chain): it builds the same
context as the in-memory reference on a replayed labelled dataset and reaches the same
decisions; commit and release move a reservation in and out of the windows, idempotently;
the same payment id is assessed once; inside the caller's transaction it rolls back with it;
and on PostgreSQL, 50 concurrent payments against one cap let exactly the ones that fit pass."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.platform.db import create_engine
from kora.risk import (
    DEFAULT_POLICY_PATH,
    FixedPolicy,
    InMemoryRiskActivity,
    Outcome,
    Policy,
    ReservationError,
    ReservationStatus,
    RiskContext,
    SqlRiskActivity,
    Usage,
    Window,
    assess,
    load_policy,
)
from kora.risk.evaluation.dataset import generate
from tests.unit.risk.factories import AT, make_request, policy_document

SHIPPED = load_policy(DEFAULT_POLICY_PATH)


def capped_policy(*, day_hard: int, **overrides: Any) -> Policy:
    """No flags, no device cooling: only a hard daily amount cap on p2p (and loose others)."""
    from kora.risk import parse_policy

    document = policy_document(flags={}, device_cooling={"hours": 0, "limit_percent": 50}, **overrides)
    for tier in document["tiers"].values():
        for kind in ("p2p", "cash_out"):
            tier[kind] = {
                "per_transaction": {"hard": 1_000_000},
                "amount": {"day": {"hard": day_hard}},
                "count": {"day": {"hard": 10_000}},
            }
    return parse_policy(document)


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()


def _comparable(context: RiskContext) -> RiskContext:
    """The SQL store returns the structuring amounts unordered; windows absent = zero usage."""
    return dataclasses.replace(
        context,
        payer_usage={w: context.usage(w) for w in Window},
        recipient_usage={w: context.usage_with_recipient(w) for w in Window},
        recent_amounts=tuple(sorted(context.recent_amounts)),
    )


async def test_sql_context_and_decisions_equal_the_in_memory_reference_on_a_replayed_dataset(
    engine: AsyncEngine,
) -> None:
    dataset = generate(seed=5, customers=20, policy=SHIPPED)
    memory = InMemoryRiskActivity()
    store = SqlRiskActivity(engine, FixedPolicy(SHIPPED))
    outcomes: Counter[str] = Counter()
    for i, payment in enumerate(dataset.payments):
        request = payment.request
        expected_context = memory.build(request, SHIPPED)
        assert _comparable(await store.context_for(request, SHIPPED)) == _comparable(expected_context), i
        expected = assess(request, expected_context, SHIPPED)
        reservation = await store.assess_and_reserve(f"p-{i}", request)
        assert reservation.decision == expected, i
        assert reservation.status is ReservationStatus.for_outcome(expected.outcome)
        memory.record(request, expected.outcome)
        outcomes[expected.outcome.label] += 1
    # the replay exercised all three outcomes, so the comparison covered limits and flags
    assert set(outcomes) == {"allow", "review", "deny"}, outcomes
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT status, count(*) FROM risk_payments GROUP BY status"))
        by_status = {status: n for status, n in rows.all()}
    assert by_status == {"reserved": outcomes["allow"], "held": outcomes["review"], "denied": outcomes["deny"]}


async def test_batches_reach_the_decisions_payments_one_by_one_reach(engine: AsyncEngine) -> None:
    """`assess_and_reserve_many` (a group commit: payers locked at once, contexts read and
    writes made per segment) decides exactly as the in-memory reference one by one, batches of
    8 consecutive payments of the replayed dataset at a time, payers repeating within a batch."""
    dataset = generate(seed=7, customers=20, policy=SHIPPED)
    memory = InMemoryRiskActivity()
    store = SqlRiskActivity(engine, FixedPolicy(SHIPPED))
    payments = dataset.payments
    outcomes: Counter[str] = Counter()
    for start in range(0, len(payments), 8):
        batch = payments[start : start + 8]
        expected = []
        for payment in batch:
            decision = assess(payment.request, memory.build(payment.request, SHIPPED), SHIPPED)
            memory.record(payment.request, decision.outcome)
            expected.append(decision)
        items = [(f"b-{start + k}", payment.request) for k, payment in enumerate(batch)]
        async with engine.begin() as conn:
            reservations = await store.assess_and_reserve_many(items, connection=conn)
        assert [r.decision for r in reservations] == expected, start
        outcomes.update(d.outcome.label for d in expected)
    assert set(outcomes) == {"allow", "review", "deny"}, outcomes
    # and replaying a batch answers the first decisions, writing nothing
    async with engine.begin() as conn:
        again = await store.assess_and_reserve_many(
            [(f"b-{k}", payment.request) for k, payment in enumerate(payments[:8])], connection=conn
        )
    assert all(r.replayed for r in again)


async def test_release_frees_the_cap_and_commit_keeps_it_both_idempotent(engine: AsyncEngine) -> None:
    policy = capped_policy(day_hard=10_000)
    store = SqlRiskActivity(engine, FixedPolicy(policy))
    first = await store.assess_and_reserve("pay-1", make_request(amount=8_000))
    assert first.decision.outcome is Outcome.ALLOW
    assert first.status is ReservationStatus.RESERVED
    # 8_000 reserved: 3_000 more would cross the 10_000 cap
    second = await store.assess_and_reserve("pay-2", make_request(amount=3_000, at=AT + timedelta(minutes=1)))
    assert second.status is ReservationStatus.DENIED
    assert "limit.amount.day" in second.decision.rules

    later = make_request(amount=3_000, at=AT + timedelta(minutes=2))
    context = await store.context_for(later, policy)
    assert context.usage(Window.DAY).amount == 8_000
    assert context.hour_histogram[AT.hour] == 1

    assert await store.release("pay-1") is ReservationStatus.RELEASED
    assert await store.release("pay-1") is ReservationStatus.RELEASED  # idempotent
    context = await store.context_for(later, policy)
    assert context.usage(Window.DAY) == Usage()  # nothing counts any more
    assert context.hour_histogram[AT.hour] == 0
    assert context.hour_amounts[AT.hour] == 0
    assert context.known_recipient is False

    third = await store.assess_and_reserve("pay-3", later)
    assert third.status is ReservationStatus.RESERVED
    assert await store.commit("pay-3") is ReservationStatus.COMMITTED
    assert await store.commit("pay-3") is ReservationStatus.COMMITTED  # idempotent
    context = await store.context_for(make_request(amount=1, at=AT + timedelta(minutes=3)), policy)
    assert context.usage(Window.DAY).amount == 3_000
    assert context.known_recipient is True

    with pytest.raises(ReservationError):
        await store.release("pay-3")  # captured: counts for good
    with pytest.raises(ReservationError):
        await store.commit("pay-1")  # released: cannot be captured
    with pytest.raises(ReservationError):
        await store.commit("pay-2")  # denied
    assert await store.release("pay-2") is ReservationStatus.DENIED  # a denied payment never counted
    with pytest.raises(ReservationError):
        await store.commit("never-seen")
    with pytest.raises(ReservationError):
        await store.release("never-seen")
    assert await store.status("pay-1") is ReservationStatus.RELEASED
    assert await store.status("never-seen") is None


async def test_the_same_payment_id_is_assessed_once(engine: AsyncEngine) -> None:
    store = SqlRiskActivity(engine, FixedPolicy(capped_policy(day_hard=10_000)))
    request = make_request(amount=6_000)
    first = await store.assess_and_reserve("pay-1", request)
    again = await store.assess_and_reserve("pay-1", request)
    assert again.replayed
    assert not first.replayed
    assert again.decision == first.decision
    assert again.status is first.status
    context = await store.context_for(make_request(amount=1, at=AT + timedelta(minutes=1)), capped_policy(day_hard=1))
    assert context.usage(Window.DAY).count == 1  # counted once
    with pytest.raises(ReservationError):
        await store.assess_and_reserve("pay-1", make_request(amount=6_001))
    with pytest.raises(ReservationError):
        await store.assess_and_reserve("", request)
    with pytest.raises(ReservationError):
        await store.assess_and_reserve("pay-2", make_request(payer_id="w" * 65))
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM risk_payments"))).scalar_one() == 1


async def test_inside_the_callers_transaction_the_reservation_rolls_back_with_it(engine: AsyncEngine) -> None:
    policy = capped_policy(day_hard=10_000)
    store = SqlRiskActivity(engine, FixedPolicy(policy))
    async with engine.connect() as conn:
        tx = await conn.begin()
        reservation = await store.assess_and_reserve("pay-1", make_request(amount=9_000), connection=conn)
        assert reservation.status is ReservationStatus.RESERVED
        inside = await store.context_for(make_request(amount=1, at=AT), policy, connection=conn)
        assert inside.usage(Window.DAY).amount == 9_000
        await tx.rollback()
    assert await store.status("pay-1") is None
    async with engine.connect() as conn:
        for table in ("risk_payments", "risk_devices", "risk_payer_hours"):
            assert (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one() == 0
    # and committed by the caller, it is there
    async with engine.begin() as conn:
        await store.assess_and_reserve("pay-2", make_request(amount=9_000), connection=conn)
        await store.commit("pay-2", connection=conn)
    assert await store.status("pay-2") is ReservationStatus.COMMITTED


async def test_a_device_is_noted_even_when_the_payment_is_denied(engine: AsyncEngine) -> None:
    policy = capped_policy(day_hard=10_000)
    store = SqlRiskActivity(engine, FixedPolicy(policy))
    denied = await store.assess_and_reserve("pay-1", make_request(amount=20_000, device_id="dev-9"))
    assert denied.status is ReservationStatus.DENIED
    context = await store.context_for(make_request(device_id="dev-9", at=AT + timedelta(hours=1)), policy)
    assert context.device_first_seen == AT
    assert context.usage(Window.DAY).amount == 0
    assert context.known_recipient is False


@pytest.mark.postgres
async def test_fifty_concurrent_payments_against_one_cap_let_exactly_those_that_fit_pass(
    migrated_postgres_url: str,
) -> None:
    fits, amount, tries = 12, 1_000, 50
    policy = capped_policy(day_hard=fits * amount)
    engine = create_engine(migrated_postgres_url, pool_size=25)
    store = SqlRiskActivity(engine, FixedPolicy(policy))
    try:
        # another payer's payments run alongside: they do not share the cap nor wait on it
        async def pay(i: int) -> ReservationStatus:
            payer = "w-crowded" if i < tries else "w-other"
            request = make_request(amount=amount, payer_id=payer, payee_id=f"w-payee-{i % 7}", at=AT)
            reservation = await asyncio.wait_for(store.assess_and_reserve(f"pay-{i}", request), timeout=60)
            return reservation.status

        statuses = await asyncio.gather(*(pay(i) for i in range(tries + 5)))
        crowded = Counter(statuses[:tries])
        assert crowded == Counter({ReservationStatus.RESERVED: fits, ReservationStatus.DENIED: tries - fits})
        assert Counter(statuses[tries:]) == Counter({ReservationStatus.RESERVED: 5})
        async with engine.connect() as conn:
            reserved = await conn.execute(
                sa.text(
                    "SELECT coalesce(sum(amount), 0) FROM risk_payments "
                    "WHERE payer_id = 'w-crowded' AND status IN ('reserved', 'held', 'committed')"
                )
            )
            assert reserved.scalar_one() == fits * amount  # the cap, never more
            hours = await conn.execute(
                sa.text("SELECT count, amount FROM risk_payer_hours WHERE payer_id = 'w-crowded'")
            )
            assert hours.one() == (fits, fits * amount)
        # releasing one frees exactly one slot
        first_passed = next(i for i, s in enumerate(statuses[:tries]) if s is ReservationStatus.RESERVED)
        await store.release(f"pay-{first_passed}")
        more = [
            await store.assess_and_reserve(f"retry-{i}", make_request(amount=amount, payer_id="w-crowded", at=AT))
            for i in range(2)
        ]
        assert [r.status for r in more] == [ReservationStatus.RESERVED, ReservationStatus.DENIED]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("in_transaction", [False, True])
def test_kora_risk_bench_prints_the_latency_percentiles(migrated_sqlite_url: str, in_transaction: bool) -> None:
    from click.testing import CliRunner

    from kora.cli import main

    args = ["risk", "bench", "--database-url", migrated_sqlite_url, "--payments", "120", "--concurrency", "2"]
    result = CliRunner().invoke(main, args + (["--in-transaction"] if in_transaction else []))
    assert result.exit_code == 0, result.output
    assert "assess_and_reserve: 120 payments" in result.output
    assert "p50 " in result.output
    assert "p95 " in result.output
    assert "p99 " in result.output
    assert ("inside the caller's transaction" in result.output) is in_transaction
    engine = create_engine(migrated_sqlite_url)

    async def count() -> int:
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(sa.text("SELECT count(*) FROM risk_payments"))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(count()) == 120


async def test_downgrading_0010_is_refused_while_a_reservation_is_open(migrated_url: str) -> None:
    from kora.migrations.guards import DowngradeRefused
    from kora.platform.migrate import downgrade

    engine = create_engine(migrated_url)
    store = SqlRiskActivity(engine, FixedPolicy(capped_policy(day_hard=10_000)))
    try:
        await store.assess_and_reserve("pay-1", make_request(amount=1_000))
        with pytest.raises(DowngradeRefused):
            await asyncio.to_thread(downgrade, migrated_url, "0009")
        assert await store.status("pay-1") is ReservationStatus.RESERVED  # nothing dropped
        await store.commit("pay-1")
        await asyncio.to_thread(downgrade, migrated_url, "0009")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert not tables & {"risk_payments", "risk_devices", "risk_payer_hours"}
    finally:
        await engine.dispose()
