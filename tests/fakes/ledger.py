"""An in-memory `LedgerStore` that refuses what the database refuses.

`append` applies the guards of the migrated schema (unique (account, sequence), an unbroken
per-account chain, the account's currency, customer money never below zero, at least two
entries balancing per currency) and writes nothing when any of them fails, so a Python bug
cannot slip through the unit tests that the database would have caught.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from kora.kernel import new_id
from kora.ledger import (
    Account,
    AccountKind,
    AccountNotFound,
    Balance,
    Direction,
    Entry,
    Hold,
    HoldNotActive,
    JournalTransaction,
    LedgerStorageRefused,
)
from kora.ledger.domain.model import AccountState, signed_effect

HOLD_STATUSES = frozenset({"active", "captured", "released", "expired"})


class StorageRefusedError(LedgerStorageRefused):
    """What the SQL store raises as `LedgerStorageError`: a constraint or trigger refused the
    write and nothing was stored."""


@dataclass(frozen=True, slots=True)
class HoldRow:
    hold: Hold
    status: str
    closed_at: datetime | None = None


@dataclass
class LedgerState:
    """The ledger tables. Rows are immutable values, so copying the containers is a snapshot."""

    accounts: dict[uuid.UUID, Account] = field(default_factory=dict)
    account_keys: dict[tuple[AccountKind, str, str], uuid.UUID] = field(default_factory=dict)
    transactions: dict[uuid.UUID, JournalTransaction] = field(default_factory=dict)
    entries: dict[uuid.UUID, list[Entry]] = field(default_factory=dict)
    holds: dict[uuid.UUID, HoldRow] = field(default_factory=dict)

    def copy(self) -> LedgerState:
        return LedgerState(
            accounts=dict(self.accounts),
            account_keys=dict(self.account_keys),
            transactions=dict(self.transactions),
            entries={aid: list(rows) for aid, rows in self.entries.items()},
            holds=dict(self.holds),
        )

    def all_entries(self) -> list[Entry]:
        """Every entry ordered by (account_id, sequence), as the verifier wants them."""
        return [e for aid in sorted(self.entries) for e in self.entries[aid]]


class InMemoryLedgerStore:
    """`kora.ledger.LedgerStore` over a `LedgerState` (the caller's open transaction)."""

    def __init__(self, state: LedgerState | None = None) -> None:
        self.state = state if state is not None else LedgerState()

    def snapshot(self) -> LedgerState:
        return self.state.copy()

    def restore(self, snapshot: LedgerState) -> None:
        """Roll back to `snapshot` (what leaving a unit of work without commit does)."""
        self.state = snapshot

    # ------------------------------------------------------------------ accounts
    async def get_or_create_account(self, *, kind: AccountKind, currency: str, owner_ref: str, at: datetime) -> Account:
        key = (kind, owner_ref, currency)
        found = self.state.account_keys.get(key)
        if found is not None:
            return self.state.accounts[found]
        account = Account(new_id(), kind, currency, owner_ref, at)
        self.state.accounts[account.id] = account
        self.state.account_keys[key] = account.id
        return account

    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        return self.state.accounts.get(account_id)

    def _account_state(self, account: Account) -> AccountState:
        rows = self.state.entries.get(account.id, [])
        last_sequence, balance = (rows[-1].sequence, rows[-1].balance_after) if rows else (0, 0)
        held = sum(
            row.hold.money.amount
            for row in self.state.holds.values()
            if row.status == "active" and row.hold.account_id == account.id
        )
        return AccountState(account, last_sequence, balance, held)

    async def lock_accounts(self, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AccountState]:
        missing = sorted(str(aid) for aid in set(account_ids) if aid not in self.state.accounts)
        if missing:
            raise AccountNotFound(", ".join(missing))
        return {aid: self._account_state(self.state.accounts[aid]) for aid in sorted(set(account_ids))}

    # ------------------------------------------------------------------ postings
    async def append(self, txn: JournalTransaction, entries: Sequence[Entry]) -> None:
        self._check_posting(txn, entries)
        self.state.transactions[txn.id] = txn
        for entry in entries:
            self.state.entries.setdefault(entry.account_id, []).append(entry)

    async def append_many(self, txns: Sequence[JournalTransaction], entries: Sequence[Entry]) -> None:
        # Like the SQL adapter's single insert pair: all or nothing.
        snapshot = self.snapshot()
        try:
            for txn in txns:
                await self.append(txn, [e for e in entries if e.transaction_id == txn.id])
        except Exception:
            self.restore(snapshot)
            raise

    def _check_posting(self, txn: JournalTransaction, entries: Sequence[Entry]) -> None:
        if txn.id in self.state.transactions:
            raise StorageRefusedError(f"duplicate journal transaction {txn.id}")
        if len(entries) < 2:
            raise StorageRefusedError("a journal transaction needs at least two entries")
        totals: dict[str, int] = defaultdict(int)
        chain: dict[uuid.UUID, tuple[int, int]] = {}
        for entry in entries:
            if entry.transaction_id != txn.id:
                raise StorageRefusedError("entry belongs to another transaction")
            account = self.state.accounts.get(entry.account_id)
            if account is None:
                raise StorageRefusedError("entry on an unknown account")
            if entry.amount <= 0 or entry.sequence <= 0:
                raise StorageRefusedError("amount and sequence must be positive")
            if entry.currency != account.currency:
                raise StorageRefusedError("entry currency differs from its account's")
            rows = self.state.entries.get(entry.account_id, [])
            last = chain.get(entry.account_id) or ((rows[-1].sequence, rows[-1].balance_after) if rows else (0, 0))
            if entry.sequence <= last[0]:
                raise StorageRefusedError(f"duplicate (account, sequence) ({entry.account_id}, {entry.sequence})")
            if entry.sequence != last[0] + 1:
                raise StorageRefusedError(f"sequence {entry.sequence} leaves a gap after {last[0]}")
            expected = last[1] + signed_effect(account.normal_side, entry.direction, entry.amount)
            if entry.balance_after != expected:
                raise StorageRefusedError(f"balance_after {entry.balance_after} should be {expected}")
            if not account.may_go_negative and entry.balance_after < 0:
                raise StorageRefusedError("customer account would go negative")
            chain[entry.account_id] = (entry.sequence, entry.balance_after)
            sign = 1 if entry.direction is Direction.DEBIT else -1
            totals[entry.currency] += sign * entry.amount
        unbalanced = sorted(code for code, total in totals.items() if total != 0)
        if unbalanced:
            raise StorageRefusedError(f"journal transaction does not balance in {', '.join(unbalanced)}")

    # ------------------------------------------------------------------ holds
    async def add_hold(self, hold: Hold) -> None:
        if hold.id in self.state.holds:
            raise StorageRefusedError(f"duplicate hold {hold.id}")
        if hold.account_id not in self.state.accounts or hold.money.amount <= 0:
            raise StorageRefusedError("a hold needs a known account and a positive amount")
        self.state.holds[hold.id] = HoldRow(hold, "active")

    async def close_hold(self, hold_id: uuid.UUID, *, status: str, at: datetime) -> Hold:
        if status not in HOLD_STATUSES:
            raise StorageRefusedError(f"unknown hold status {status!r}")
        row = self.state.holds.get(hold_id)
        if row is None or row.status != "active":
            raise HoldNotActive(str(hold_id))
        self.state.holds[hold_id] = replace(row, status=status, closed_at=at)
        return row.hold

    async def active_hold_for_payment(self, payment_id: uuid.UUID) -> Hold | None:
        for row in self.state.holds.values():
            if row.hold.payment_id == payment_id and row.status == "active":
                return row.hold
        return None

    def hold_status(self, hold_id: uuid.UUID) -> str | None:
        row = self.state.holds.get(hold_id)
        return row.status if row else None

    # ------------------------------------------------------------------ reads
    async def balance(self, account_id: uuid.UUID) -> Balance:
        account = self.state.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(str(account_id))
        state = self._account_state(account)
        return Balance(account_id, account.currency, state.balance, state.held)

    async def entries(self, account_id: uuid.UUID, *, limit: int, before_sequence: int | None) -> list[Entry]:
        rows = self.state.entries.get(account_id, [])
        if before_sequence is not None:
            rows = [e for e in rows if e.sequence < before_sequence]
        return list(reversed(rows))[:limit]

    async def transaction_for_payment(self, payment_id: uuid.UUID, kind: str) -> JournalTransaction | None:
        matching = [t for t in self.state.transactions.values() if t.payment_id == payment_id and t.kind == kind]
        return min(matching, key=lambda t: t.created_at) if matching else None

    async def all_accounts(self) -> AsyncIterator[Account]:
        for account_id in sorted(self.state.accounts):
            yield self.state.accounts[account_id]

    async def all_entries_ordered(self) -> AsyncIterator[Entry]:
        for entry in self.state.all_entries():
            yield entry
