"""The ledger's storage port. Only the ledger module writes ledger tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from kora.ledger.domain.model import (
    Account,
    AccountKind,
    AccountState,
    Balance,
    Entry,
    Hold,
    JournalTransaction,
)


class LedgerStore(Protocol):
    """Reads and appends ledger rows inside the caller's open transaction (never commits)."""

    async def get_or_create_account(self, *, kind: AccountKind, currency: str, owner_ref: str, at: datetime) -> Account:
        """The account for (kind, owner_ref, currency), created if absent; safe under races."""
        ...

    async def get_account(self, account_id: uuid.UUID) -> Account | None: ...

    async def lock_accounts(self, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AccountState]:
        """Lock the accounts for posting (in id order, so concurrent postings never deadlock)
        and return each one's last sequence, posted balance and active holds."""
        ...

    async def append(self, txn: JournalTransaction, entries: Sequence[Entry]) -> None:
        """Insert the transaction and its entries. The database rejects a duplicate
        (account, sequence), an unbalanced transaction and any later UPDATE/DELETE."""
        ...

    async def append_many(self, txns: Sequence[JournalTransaction], entries: Sequence[Entry]) -> None:
        """`append` for several transactions at once (entries in posting order)."""
        ...

    async def add_hold(self, hold: Hold) -> None: ...

    async def active_hold_for_payment(self, payment_id: uuid.UUID) -> Hold | None:
        """The payment's hold that is still active, if any."""
        ...

    async def close_hold(self, hold_id: uuid.UUID, *, status: str, at: datetime) -> Hold:
        """Mark an active hold captured/released/expired; raises HoldNotActive otherwise."""
        ...

    async def balance(self, account_id: uuid.UUID) -> Balance: ...

    async def entries(self, account_id: uuid.UUID, *, limit: int, before_sequence: int | None) -> list[Entry]:
        """Newest first."""
        ...

    async def transaction_for_payment(self, payment_id: uuid.UUID, kind: str) -> JournalTransaction | None: ...

    def all_accounts(self) -> AsyncIterator[Account]: ...

    def all_entries_ordered(self) -> AsyncIterator[Entry]:
        """Every entry ordered by (account_id, sequence), streamed."""
        ...
