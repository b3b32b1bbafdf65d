"""The ledger's events: one `ledger.transaction_posted` per journal transaction, written in the
transaction that posts it. Account ids, directions and amounts; never an owner's PII."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from kora.events import DomainEvent
from kora.ledger.domain.model import Account, Entry, JournalTransaction

TRANSACTION_POSTED = "ledger.transaction_posted"


def transaction_posted_events(
    txns: Sequence[JournalTransaction], entries: Sequence[Entry], account: Callable[[uuid.UUID], Account | None]
) -> list[DomainEvent]:
    by_txn: dict[uuid.UUID, list[Entry]] = {}
    for entry in entries:
        by_txn.setdefault(entry.transaction_id, []).append(entry)
    events = []
    for txn in txns:
        lines = []
        for e in by_txn.get(txn.id, []):
            known = account(e.account_id)
            lines.append(
                {
                    "account_id": str(e.account_id),
                    "account_kind": None if known is None else known.kind.value,
                    "direction": e.direction.value,
                    "amount": e.amount,
                    "currency": e.currency,
                    "sequence": e.sequence,
                    "balance_after": e.balance_after,
                }
            )
        events.append(
            DomainEvent(
                type=TRANSACTION_POSTED,
                version=1,
                aggregate_type="journal_transaction",
                # Keyed by payment when there is one, so a payment's postings and status
                # changes share a partition and keep their relative order.
                aggregate_id=str(txn.payment_id or txn.id),
                payload={
                    "transaction_id": str(txn.id),
                    "kind": txn.kind,
                    "payment_id": None if txn.payment_id is None else str(txn.payment_id),
                    "reverses_id": None if txn.reverses_id is None else str(txn.reverses_id),
                    "entries": lines,
                },
                occurred_at=txn.created_at,
            )
        )
    return events
