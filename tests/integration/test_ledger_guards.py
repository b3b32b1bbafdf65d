"""The database guards money too: on the migrated schema, PostgreSQL (and SQLite, where it can)
refuses to change history or to store entries that break an account's chain."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from kora.kernel import FixedClock, Money
from kora.ledger import AccountKind, Direction, Ledger, Leg
from kora.ledger.adapters.sql import LedgerStorageError, SqlLedgerStore
from kora.platform.db import create_engine
from kora.platform.uow import SqlUnitOfWork

REFUSED = (DBAPIError, IntegrityError)


async def _funded_pair(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    engine = create_engine(url)
    clock = FixedClock()
    try:
        async with SqlUnitOfWork(engine) as uow:
            ledger = Ledger(SqlLedgerStore(uow.connection), clock)
            alice = await ledger.open_wallet(uuid.uuid4(), "XOF")
            bob = await ledger.open_wallet(uuid.uuid4(), "XOF")
            clearing = await ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "sandbox")
            await ledger.post(
                kind="cash_in.capture",
                legs=[
                    Leg(clearing.id, Direction.DEBIT, Money(1000, "XOF")),
                    Leg(alice.id, Direction.CREDIT, Money(1000, "XOF")),
                ],
                payment_id=None,
                correlation_id="test-guards",
            )
            await uow.commit()
        return alice.id, bob.id
    finally:
        await engine.dispose()


async def _execute(url: str, sql: str, params: dict[str, object] | None = None) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(sql), params or {})
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "UPDATE ledger_entries SET balance_after = 0",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_transactions",
        "UPDATE ledger_transactions SET kind = 'forged'",
    ],
)
async def test_history_cannot_be_rewritten(migrated_url: str, statement: str) -> None:
    await _funded_pair(migrated_url)
    with pytest.raises(REFUSED, match="append-only"):
        await _execute(migrated_url, statement)


async def test_truncate_is_refused_on_postgres(migrated_postgres_url: str) -> None:
    await _funded_pair(migrated_postgres_url)
    with pytest.raises(REFUSED, match="append-only"):
        await _execute(migrated_postgres_url, "TRUNCATE ledger_entries CASCADE")


async def _raw_entry(url: str, *, account: uuid.UUID, sequence: int, balance_after: int, direction: str) -> None:
    """Insert a journal transaction by hand, bypassing Python: only the database can refuse it."""
    txn = uuid.uuid4()
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            t = sa.table("ledger_transactions", sa.column("id", sa.Uuid), sa.column("kind"), sa.column("created_at"))
            await conn.execute(t.insert().values(id=txn, kind="manual", created_at=sa.func.current_timestamp()))
            e = sa.table(
                "ledger_entries",
                *(sa.column(c) for c in ("direction", "amount", "currency", "sequence", "balance_after", "created_at")),
                sa.column("id", sa.Uuid),
                sa.column("transaction_id", sa.Uuid),
                sa.column("account_id", sa.Uuid),
            )
            await conn.execute(
                e.insert().values(
                    id=uuid.uuid4(),
                    transaction_id=txn,
                    account_id=account,
                    direction=direction,
                    amount=100,
                    currency="XOF",
                    sequence=sequence,
                    balance_after=balance_after,
                    created_at=sa.func.current_timestamp(),
                )
            )
    finally:
        await engine.dispose()


async def test_entry_with_wrong_balance_after_is_refused(migrated_url: str) -> None:
    alice, _ = await _funded_pair(migrated_url)
    with pytest.raises(REFUSED):
        await _raw_entry(migrated_url, account=alice, sequence=2, balance_after=5000, direction="credit")


async def test_entry_with_duplicate_sequence_is_refused(migrated_url: str) -> None:
    alice, _ = await _funded_pair(migrated_url)
    with pytest.raises(REFUSED):
        await _raw_entry(migrated_url, account=alice, sequence=1, balance_after=1100, direction="credit")


async def test_entry_leaving_a_gap_is_refused(migrated_url: str) -> None:
    alice, _ = await _funded_pair(migrated_url)
    with pytest.raises(REFUSED):
        await _raw_entry(migrated_url, account=alice, sequence=5, balance_after=1100, direction="credit")


async def test_wallet_cannot_go_negative_in_the_database(migrated_url: str) -> None:
    _, bob = await _funded_pair(migrated_url)
    with pytest.raises(REFUSED):
        await _raw_entry(migrated_url, account=bob, sequence=1, balance_after=-100, direction="debit")


async def test_unbalanced_transaction_is_refused_at_commit_on_postgres(migrated_postgres_url: str) -> None:
    alice, _ = await _funded_pair(migrated_postgres_url)
    # A chain-consistent single credit: only the deferred zero-sum check can catch it.
    with pytest.raises(REFUSED, match=r"entries|balance"):
        await _raw_entry(migrated_postgres_url, account=alice, sequence=2, balance_after=1100, direction="credit")


async def test_accounts_cannot_be_changed(migrated_url: str) -> None:
    await _funded_pair(migrated_url)
    with pytest.raises(REFUSED, match="append-only"):
        await _execute(migrated_url, "UPDATE ledger_accounts SET kind = 'suspense'")


async def test_a_payment_step_posts_once_and_a_transaction_is_reversed_once(migrated_url: str) -> None:
    alice_id, _ = await _funded_pair(migrated_url)  # 1000 XOF, so only the database can refuse below
    engine = create_engine(migrated_url)
    clock = FixedClock()
    payment_id = uuid.uuid4()
    try:
        async with SqlUnitOfWork(engine) as uow:
            ledger = Ledger(SqlLedgerStore(uow.connection), clock)
            alice = await ledger.account(alice_id)
            assert alice is not None
            clearing = await ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "sandbox")
            legs = [
                Leg(clearing.id, Direction.DEBIT, Money(500, "XOF")),
                Leg(alice.id, Direction.CREDIT, Money(500, "XOF")),
            ]
            original, _ = await ledger.post(
                kind="cash_in.capture", legs=legs, payment_id=payment_id, correlation_id=None
            )
            await uow.commit()
        async with SqlUnitOfWork(engine) as uow:
            ledger = Ledger(SqlLedgerStore(uow.connection), clock)
            with pytest.raises(LedgerStorageError):  # the same step of the same payment, again
                await ledger.post(kind="cash_in.capture", legs=legs, payment_id=payment_id, correlation_id=None)
        async with SqlUnitOfWork(engine) as uow:
            ledger = Ledger(SqlLedgerStore(uow.connection), clock)
            await ledger.reverse(original, correlation_id=None)
            await uow.commit()
        async with SqlUnitOfWork(engine) as uow:
            ledger = Ledger(SqlLedgerStore(uow.connection), clock)
            with pytest.raises(LedgerStorageError):  # a second reversal of the same transaction
                await ledger.reverse(original, correlation_id=None)
    finally:
        await engine.dispose()


async def test_a_hold_only_moves_from_active_to_a_final_status(migrated_url: str) -> None:
    alice_id, _ = await _funded_pair(migrated_url)
    engine = create_engine(migrated_url)
    try:
        async with SqlUnitOfWork(engine) as uow:
            ledger = Ledger(SqlLedgerStore(uow.connection), FixedClock())
            hold = await ledger.place_hold(alice_id, Money(300, "XOF"), payment_id=None)
            await uow.commit()
    finally:
        await engine.dispose()
    with pytest.raises(REFUSED):
        await _execute(migrated_url, "UPDATE ledger_holds SET amount = 1")
    with pytest.raises(REFUSED):
        await _execute(migrated_url, "DELETE FROM ledger_holds")
    await _execute(migrated_url, "UPDATE ledger_holds SET status = 'released'")  # the one allowed change
    with pytest.raises(REFUSED):
        await _execute(migrated_url, "UPDATE ledger_holds SET status = 'active'")
    assert hold.money.amount == 300
