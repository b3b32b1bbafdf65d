"""SqlLedgerStore: the ledger port on SQLAlchemy Core (PostgreSQL via asyncpg, or SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events import EventRecorder
from kora.kernel import Money, new_id
from kora.ledger.adapters.events import transaction_posted_events
from kora.ledger.adapters.tables import ledger_accounts, ledger_entries, ledger_holds, ledger_transactions
from kora.ledger.domain.model import (
    Account,
    AccountKind,
    AccountNotFound,
    AccountState,
    Balance,
    Direction,
    Entry,
    Hold,
    HoldNotActive,
    JournalTransaction,
    LedgerStorageRefused,
    Leg,
)


class LedgerStorageError(LedgerStorageRefused):
    """The database refused a ledger write (constraint or trigger): nothing was posted."""


def _account(row: Any) -> Account:
    return Account(row.id, AccountKind(row.kind), row.currency, row.owner_ref, row.created_at)


def _entry(row: Any) -> Entry:
    return Entry(
        id=row.id,
        transaction_id=row.transaction_id,
        account_id=row.account_id,
        direction=Direction(row.direction),
        amount=row.amount,
        currency=row.currency,
        sequence=row.sequence,
        balance_after=row.balance_after,
        created_at=row.created_at,
        payment_id=row.payment_id,
    )


class AccountCache:
    """Accounts never change once created (the table is append-only), so a process may keep
    them: it spares the lookups on every posting. Bounded; cleared when full."""

    def __init__(self, max_size: int = 200_000) -> None:
        self._by_id: dict[uuid.UUID, Account] = {}
        self._by_key: dict[tuple[str, str, str], Account] = {}
        self._max_size = max_size

    def by_id(self, account_id: uuid.UUID) -> Account | None:
        return self._by_id.get(account_id)

    def by_key(self, kind: AccountKind, currency: str, owner_ref: str) -> Account | None:
        return self._by_key.get((kind.value, currency, owner_ref))

    def keep(self, account: Account) -> Account:
        if len(self._by_id) >= self._max_size:
            self._by_id.clear()
            self._by_key.clear()
        self._by_id[account.id] = account
        self._by_key[(account.kind.value, account.currency, account.owner_ref)] = account
        return account


class SqlLedgerStore:
    def __init__(
        self, conn: AsyncConnection, *, cache: AccountCache | None = None, events: EventRecorder | None = None
    ) -> None:
        self._conn = conn
        # Each journal transaction is announced in the transaction that posts it (the outbox).
        self._events = events
        self._pg = conn.dialect.name == "postgresql"
        self._cache = cache or AccountCache()
        self._uncommitted: set[uuid.UUID] = set()

    async def get_or_create_account(self, *, kind: AccountKind, currency: str, owner_ref: str, at: datetime) -> Account:
        cached = self._cache.by_key(kind, currency, owner_ref)
        if cached is not None:
            return cached
        found = await self._find(kind, currency, owner_ref)
        if found is not None:
            return self._keep(found)
        values = {
            "id": new_id(),
            "kind": kind.value,
            "currency": currency,
            "owner_ref": owner_ref,
            "created_at": at,
        }
        insert = (postgresql.insert if self._pg else sqlite.insert)(ledger_accounts)
        await self._conn.execute(
            insert.values(**values).on_conflict_do_nothing(index_elements=["kind", "owner_ref", "currency"])
        )
        created = await self._find(kind, currency, owner_ref)
        if created is None:  # pragma: no cover - the insert or a concurrent one must exist
            raise LedgerStorageError("account could not be created")
        # Not cached: the creating transaction may still roll back.
        self._uncommitted.add(created.id)
        return created

    def _keep(self, account: Account) -> Account:
        """Cache only accounts this transaction did not create (those may still roll back)."""
        return account if account.id in self._uncommitted else self._cache.keep(account)

    async def _find(self, kind: AccountKind, currency: str, owner_ref: str) -> Account | None:
        row = (
            await self._conn.execute(
                sa.select(ledger_accounts).where(
                    ledger_accounts.c.kind == kind.value,
                    ledger_accounts.c.owner_ref == owner_ref,
                    ledger_accounts.c.currency == currency,
                )
            )
        ).first()
        return _account(row) if row else None

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        cached = self._cache.by_id(account_id)
        if cached is not None:
            return cached
        row = (await self._conn.execute(sa.select(ledger_accounts).where(ledger_accounts.c.id == account_id))).first()
        return self._keep(_account(row)) if row else None

    def _state_query(self, account_ids: Sequence[uuid.UUID]) -> sa.Select[Any]:
        e = ledger_entries
        last = (
            sa.select(e.c.sequence, e.c.balance_after)
            .where(e.c.account_id == ledger_accounts.c.id)
            .order_by(e.c.sequence.desc())
            .limit(1)
        )
        held = (
            sa.select(sa.func.coalesce(sa.func.sum(ledger_holds.c.amount), 0))
            .where(ledger_holds.c.account_id == ledger_accounts.c.id, ledger_holds.c.status == "active")
            .scalar_subquery()
        )
        return (
            sa.select(
                ledger_accounts,
                last.with_only_columns(e.c.sequence).scalar_subquery().label("last_sequence"),
                last.with_only_columns(e.c.balance_after).scalar_subquery().label("last_balance"),
                held.label("held"),
            )
            .where(ledger_accounts.c.id.in_(account_ids))
            .order_by(ledger_accounts.c.id)
        )

    async def lock_accounts(self, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AccountState]:
        if self._pg:
            # Lock first, read after: in READ COMMITTED a statement that waited for a row lock
            # still reads its subqueries from the snapshot taken before the wait, so reading
            # the last entry in the locking statement could return a stale sequence.
            await self._conn.execute(
                sa.select(ledger_accounts.c.id)
                .where(ledger_accounts.c.id.in_(account_ids))
                .order_by(ledger_accounts.c.id)
                .with_for_update()
            )
        rows = (await self._conn.execute(self._state_query(account_ids))).all()
        states = {
            row.id: AccountState(_account(row), row.last_sequence or 0, row.last_balance or 0, int(row.held or 0))
            for row in rows
        }
        missing = set(account_ids) - set(states)
        if missing:
            raise AccountNotFound(", ".join(sorted(str(m) for m in missing)))
        return states

    async def append(self, txn: JournalTransaction, entries: Sequence[Entry]) -> None:
        await self.append_many([txn], entries)

    async def append_many(self, txns: Sequence[JournalTransaction], entries: Sequence[Entry]) -> None:
        if not txns:
            return
        try:
            await self._conn.execute(
                ledger_transactions.insert(),
                [
                    {
                        "id": t.id,
                        "kind": t.kind,
                        "payment_id": t.payment_id,
                        "correlation_id": t.correlation_id,
                        "reverses_id": t.reverses_id,
                        "created_at": t.created_at,
                    }
                    for t in txns
                ],
            )
            await self._conn.execute(
                ledger_entries.insert(),
                [
                    {
                        "id": e.id,
                        "transaction_id": e.transaction_id,
                        "account_id": e.account_id,
                        "direction": e.direction.value,
                        "amount": e.amount,
                        "currency": e.currency,
                        "sequence": e.sequence,
                        "balance_after": e.balance_after,
                        "payment_id": e.payment_id,
                        "created_at": e.created_at,
                    }
                    for e in entries
                ],
            )
        except IntegrityError as exc:
            raise LedgerStorageError("the database refused the posting") from exc
        if self._events is not None:
            self._events.record(*transaction_posted_events(txns, entries, self._cache.by_id))

    async def add_hold(self, hold: Hold) -> None:
        await self._conn.execute(
            ledger_holds.insert().values(
                id=hold.id,
                account_id=hold.account_id,
                amount=hold.money.amount,
                currency=hold.money.currency,
                payment_id=hold.payment_id,
                status="active",
                created_at=hold.created_at,
                expires_at=hold.expires_at,
            )
        )

    async def active_hold_for_payment(self, payment_id: uuid.UUID) -> Hold | None:
        h = ledger_holds
        row = (
            await self._conn.execute(sa.select(h).where(h.c.payment_id == payment_id, h.c.status == "active"))
        ).first()
        if row is None:
            return None
        return Hold(
            row.id, row.account_id, Money(row.amount, row.currency), row.payment_id, row.created_at, row.expires_at
        )

    async def close_hold(self, hold_id: uuid.UUID, *, status: str, at: datetime) -> Hold:
        h = ledger_holds
        row = (
            await self._conn.execute(
                h.update()
                .where(h.c.id == hold_id, h.c.status == "active")
                .values(status=status, closed_at=at)
                .returning(h)
            )
        ).first()
        if row is None:
            raise HoldNotActive(str(hold_id))
        return Hold(
            row.id,
            row.account_id,
            Money(row.amount, row.currency),
            row.payment_id,
            row.created_at,
            row.expires_at,
        )

    async def balance(self, account_id: uuid.UUID) -> Balance:
        row = (await self._conn.execute(self._state_query([account_id]))).first()
        if row is None:
            raise AccountNotFound(str(account_id))
        return Balance(account_id, row.currency, row.last_balance or 0, int(row.held or 0))

    async def entries(self, account_id: uuid.UUID, *, limit: int, before_sequence: int | None) -> list[Entry]:
        e = ledger_entries
        query = sa.select(e).where(e.c.account_id == account_id)
        if before_sequence is not None:
            query = query.where(e.c.sequence < before_sequence)
        rows = await self._conn.execute(query.order_by(e.c.sequence.desc()).limit(limit))
        return [_entry(r) for r in rows]

    async def transaction_for_payment(self, payment_id: uuid.UUID, kind: str) -> JournalTransaction | None:
        t = ledger_transactions
        row = (
            await self._conn.execute(
                sa.select(t).where(t.c.payment_id == payment_id, t.c.kind == kind).order_by(t.c.created_at)
            )
        ).first()
        if row is None:
            return None
        legs = tuple(
            Leg(r.account_id, Direction(r.direction), Money(r.amount, r.currency))
            for r in await self._conn.execute(
                sa.select(ledger_entries).where(ledger_entries.c.transaction_id == row.id)
            )
        )
        return JournalTransaction(
            row.id, row.kind, legs, row.created_at, row.payment_id, row.correlation_id, row.reverses_id
        )

    async def all_accounts(self) -> AsyncIterator[Account]:
        result = await self._conn.stream(sa.select(ledger_accounts).order_by(ledger_accounts.c.id))
        async for row in result:
            yield _account(row)

    async def all_entries_ordered(self) -> AsyncIterator[Entry]:
        e = ledger_entries
        result = await self._conn.stream(sa.select(e).order_by(e.c.account_id, e.c.sequence))
        async for row in result:
            yield _entry(row)
