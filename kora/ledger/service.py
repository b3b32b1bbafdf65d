"""Ledger use cases. They run inside the caller's unit of work: the payments module owns the
transaction and calls the ledger through this facade (its public interface)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from opentelemetry import trace

from kora.kernel import Clock, Money, new_id
from kora.ledger.domain.invariants import InvariantReport, LedgerVerifier
from kora.ledger.domain.model import (
    Account,
    AccountKind,
    AccountState,
    Balance,
    CurrencyMismatch,
    Entry,
    Hold,
    InsufficientFunds,
    JournalTransaction,
    LedgerError,
    Leg,
    PostingPlan,
)
from kora.ledger.ports import LedgerStore

_tracer = trace.get_tracer("kora.ledger")


@dataclass(frozen=True, slots=True)
class PostingRequest:
    kind: str
    legs: Sequence[Leg]
    payment_id: uuid.UUID | None
    correlation_id: str | None


PostingOutcome = tuple[JournalTransaction, list[Entry]] | LedgerError

SYSTEM_OWNER = "kora"


class Ledger:
    """The ledger's public facade, bound to one store (one open transaction)."""

    def __init__(self, store: LedgerStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.last_posting_seconds = 0.0

    async def open_wallet(self, owner_id: uuid.UUID, currency: str) -> Account:
        return await self._store.get_or_create_account(
            kind=AccountKind.WALLET, currency=currency, owner_ref=str(owner_id), at=self._clock.now()
        )

    async def open_merchant_account(self, owner_id: uuid.UUID, currency: str) -> Account:
        """The merchant's account, opened if absent: a liability like a wallet, never overdrawn."""
        return await self._store.get_or_create_account(
            kind=AccountKind.MERCHANT, currency=currency, owner_ref=str(owner_id), at=self._clock.now()
        )

    async def system_account(self, kind: AccountKind, currency: str, owner_ref: str = SYSTEM_OWNER) -> Account:
        """Provider clearing/settlement accounts use the provider name as owner_ref."""
        return await self._store.get_or_create_account(
            kind=kind, currency=currency, owner_ref=owner_ref, at=self._clock.now()
        )

    async def account(self, account_id: uuid.UUID) -> Account | None:
        return await self._store.get_account(account_id)

    async def post(
        self,
        *,
        kind: str,
        legs: Sequence[Leg],
        payment_id: uuid.UUID | None,
        correlation_id: str | None,
        capture_holds: Sequence[uuid.UUID] = (),
    ) -> tuple[JournalTransaction, list[Entry]]:
        """Post a balanced journal transaction atomically.

        Locks the accounts, derives each entry's sequence and balance_after, refuses to take a
        wallet below zero (InsufficientFunds), and closes `capture_holds` as captured.
        Raises UnbalancedTransaction, CurrencyMismatch, AccountNotFound, InsufficientFunds.
        """
        started = time.perf_counter()
        with _tracer.start_as_current_span("ledger.post", attributes={"ledger.kind": kind}):
            at = self._clock.now()
            txn = JournalTransaction.create(
                kind=kind, legs=legs, at=at, payment_id=payment_id, correlation_id=correlation_id
            )
            states = await self._store.lock_accounts(sorted({leg.account_id for leg in legs}))
            released: dict[uuid.UUID, int] = {}
            for hold_id in capture_holds:
                hold = await self._store.close_hold(hold_id, status="captured", at=at)
                released[hold.account_id] = released.get(hold.account_id, 0) + hold.money.amount
            entries = PostingPlan(states, released).entries_for(txn)
            await self._store.append(txn, entries)
        self.last_posting_seconds = time.perf_counter() - started
        return txn, entries

    async def post_many(self, postings: Sequence[PostingRequest]) -> list[PostingOutcome]:
        """Post several transactions in one go (group commit): one lock round for every
        account involved, then each posting applied in order on the running balances. A
        posting the ledger refuses (e.g. InsufficientFunds) is returned as its error and
        leaves no trace; the others are appended together."""
        if not postings:
            return []
        started = time.perf_counter()
        with _tracer.start_as_current_span("ledger.post_many", attributes={"ledger.postings": len(postings)}):
            at = self._clock.now()
            ids = sorted({leg.account_id for p in postings for leg in p.legs})
            running = dict(await self._store.lock_accounts(ids))
            outcomes: list[PostingOutcome] = []
            txns: list[JournalTransaction] = []
            entries: list[Entry] = []
            for p in postings:
                try:
                    txn = JournalTransaction.create(
                        kind=p.kind,
                        legs=p.legs,
                        at=at,
                        payment_id=p.payment_id,
                        correlation_id=p.correlation_id,
                    )
                    posted = PostingPlan(running).entries_for(txn)
                except LedgerError as exc:
                    outcomes.append(exc)
                    continue
                for entry in posted:
                    state = running[entry.account_id]
                    running[entry.account_id] = AccountState(
                        state.account, entry.sequence, entry.balance_after, state.held
                    )
                txns.append(txn)
                entries.extend(posted)
                outcomes.append((txn, posted))
            await self._store.append_many(txns, entries)
        self.last_posting_seconds = time.perf_counter() - started
        return outcomes

    async def reverse(
        self, original: JournalTransaction, *, correlation_id: str | None
    ) -> tuple[JournalTransaction, list[Entry]]:
        """Post the mirror of `original` as a new transaction."""
        mirror = original.reversal(at=self._clock.now(), correlation_id=correlation_id)
        states = await self._store.lock_accounts(sorted({leg.account_id for leg in mirror.legs}))
        entries = PostingPlan(states).entries_for(mirror)
        await self._store.append(mirror, entries)
        return mirror, entries

    async def lock(self, account_ids: Iterable[uuid.UUID]) -> None:
        """Lock these accounts for the rest of the transaction, in id order — the order every
        posting takes its locks in. A transaction about to hold funds on some accounts and post
        on others takes them all here first, so it cannot deadlock with another transaction."""
        await self._store.lock_accounts(sorted(set(account_ids)))

    async def place_hold(
        self,
        account_id: uuid.UUID,
        money: Money,
        *,
        payment_id: uuid.UUID | None,
        expires_at: datetime | None = None,
    ) -> Hold:
        """Reserve funds: refused with InsufficientFunds when the available balance is short."""
        states = await self._store.lock_accounts([account_id])
        state = states[account_id]
        if state.account.currency != money.currency:
            raise CurrencyMismatch(f"account in {state.account.currency} cannot hold {money.currency}")
        if not state.account.may_go_negative and state.available < money.amount:
            raise InsufficientFunds("the available balance does not cover this amount")
        hold = Hold(new_id(), account_id, money, payment_id, self._clock.now(), expires_at)
        await self._store.add_hold(hold)
        return hold

    async def active_hold_for_payment(self, payment_id: uuid.UUID) -> Hold | None:
        return await self._store.active_hold_for_payment(payment_id)

    async def release_hold(self, hold_id: uuid.UUID) -> Hold:
        return await self._store.close_hold(hold_id, status="released", at=self._clock.now())

    async def balance(self, account_id: uuid.UUID) -> Balance:
        return await self._store.balance(account_id)

    async def history(self, account_id: uuid.UUID, *, limit: int, before_sequence: int | None = None) -> list[Entry]:
        return await self._store.entries(account_id, limit=limit, before_sequence=before_sequence)

    async def transaction_for_payment(self, payment_id: uuid.UUID, kind: str) -> JournalTransaction | None:
        return await self._store.transaction_for_payment(payment_id, kind)

    async def verify(self) -> InvariantReport:
        """Run every ledger invariant over the whole ledger (streamed)."""
        with _tracer.start_as_current_span("ledger.verify"):
            verifier = LedgerVerifier([a async for a in self._store.all_accounts()])
            async for entry in self._store.all_entries_ordered():
                verifier.feed(entry)
            return verifier.finish()
