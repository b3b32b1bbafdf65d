"""Double-entry ledger model. Pure Python: no I/O, no framework.

Every journal transaction balances per currency; entries are immutable and carry their
account sequence and the resulting balance, so a balance is the last entry's `balance_after`
— a pure function of the entries — never a stored mutable number.
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kora.kernel import Money, new_id


class LedgerError(Exception):
    """Base of the ledger's domain errors."""


class UnbalancedTransaction(LedgerError):
    pass


class InsufficientFunds(LedgerError):
    pass


class CurrencyMismatch(LedgerError):
    pass


class AccountNotFound(LedgerError):
    pass


class HoldNotActive(LedgerError):
    pass


class LedgerStorageRefused(LedgerError):
    """The store (the database's own guards) refused a write the domain had accepted: a bug or
    corruption signal, never a customer's doing. Nothing was posted."""


class Direction(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class NormalSide(enum.StrEnum):
    """Which direction increases the account's balance: credit for liabilities and income
    (wallets, merchants, fee revenue), debit for assets (clearing, settlement bank)."""

    DEBIT = "debit"
    CREDIT = "credit"


class AccountKind(enum.StrEnum):
    WALLET = "wallet"
    MERCHANT = "merchant"
    PROVIDER_CLEARING = "provider_clearing"
    SETTLEMENT_BANK = "settlement_bank"
    FEE_REVENUE = "fee_revenue"
    SUSPENSE = "suspense"

    @property
    def normal_side(self) -> NormalSide:
        if self in (AccountKind.PROVIDER_CLEARING, AccountKind.SETTLEMENT_BANK):
            return NormalSide.DEBIT
        return NormalSide.CREDIT

    @property
    def may_go_negative(self) -> bool:
        """Customer and merchant money can never be overdrawn; internal accounts can."""
        return self not in (AccountKind.WALLET, AccountKind.MERCHANT)


@dataclass(frozen=True, slots=True)
class Account:
    id: uuid.UUID
    kind: AccountKind
    currency: str
    owner_ref: str
    created_at: datetime

    @property
    def normal_side(self) -> NormalSide:
        return self.kind.normal_side

    @property
    def may_go_negative(self) -> bool:
        return self.kind.may_go_negative


def signed_effect(normal_side: NormalSide, direction: Direction, amount: int) -> int:
    """How much an entry moves an account's balance (in its normal-side sign)."""
    same = direction.value == normal_side.value
    return amount if same else -amount


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a posting: move `money` in `direction` on `account_id`."""

    account_id: uuid.UUID
    direction: Direction
    money: Money

    def __post_init__(self) -> None:
        if self.money.amount <= 0:
            raise LedgerError("a leg's amount must be positive")


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as locked for posting: its last sequence, posted balance and active holds."""

    account: Account
    last_sequence: int
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Entry:
    id: uuid.UUID
    transaction_id: uuid.UUID
    account_id: uuid.UUID
    direction: Direction
    amount: int
    currency: str
    sequence: int
    balance_after: int
    created_at: datetime
    payment_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class JournalTransaction:
    id: uuid.UUID
    kind: str
    legs: tuple[Leg, ...]
    created_at: datetime
    payment_id: uuid.UUID | None = None
    correlation_id: str | None = None
    reverses_id: uuid.UUID | None = None

    @classmethod
    def create(
        cls,
        *,
        kind: str,
        legs: Sequence[Leg],
        at: datetime,
        payment_id: uuid.UUID | None = None,
        correlation_id: str | None = None,
        reverses_id: uuid.UUID | None = None,
    ) -> JournalTransaction:
        """A transaction whose legs balance per currency; raises UnbalancedTransaction."""
        if len(legs) < 2:
            raise UnbalancedTransaction("a journal transaction needs at least two legs")
        if not transaction_balances(legs):
            raise UnbalancedTransaction("debits and credits differ")
        return cls(new_id(), kind, tuple(legs), at, payment_id, correlation_id, reverses_id)

    def reversal(self, *, at: datetime, correlation_id: str | None = None) -> JournalTransaction:
        """The mirror of this transaction, as a new transaction (entries are never edited)."""
        mirrored = [
            Leg(
                leg.account_id,
                Direction.CREDIT if leg.direction is Direction.DEBIT else Direction.DEBIT,
                leg.money,
            )
            for leg in self.legs
        ]
        return JournalTransaction.create(
            kind=f"{self.kind}.reversal",
            legs=mirrored,
            at=at,
            payment_id=self.payment_id,
            correlation_id=correlation_id,
            reverses_id=self.id,
        )


def transaction_balances(legs: Iterable[Leg]) -> bool:
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        sign = 1 if leg.direction is Direction.DEBIT else -1
        totals[leg.money.currency] += sign * leg.money.amount
    return all(total == 0 for total in totals.values())


@dataclass
class PostingPlan:
    """Turns a balanced transaction into entries against locked account states.

    `released_holds` are holds this posting consumes (a capture): their amount no longer
    counts against the available balance of the account they were on.
    """

    states: dict[uuid.UUID, AccountState]
    released_holds: dict[uuid.UUID, int] = field(default_factory=dict)

    def entries_for(self, txn: JournalTransaction) -> list[Entry]:
        running: dict[uuid.UUID, tuple[int, int]] = {}
        for leg in txn.legs:
            known = self.states.get(leg.account_id)
            if known is not None:
                running[leg.account_id] = (known.last_sequence, known.balance)
        entries: list[Entry] = []
        for leg in txn.legs:
            state = self.states.get(leg.account_id)
            if state is None:
                raise AccountNotFound(str(leg.account_id))
            if state.account.currency != leg.money.currency:
                raise CurrencyMismatch(f"account in {state.account.currency} cannot take {leg.money.currency}")
            sequence, balance = running[leg.account_id]
            balance += signed_effect(state.account.normal_side, leg.direction, leg.money.amount)
            if balance < 0 and not state.account.may_go_negative:
                raise InsufficientFunds("the account's balance does not cover this posting")
            sequence += 1
            running[leg.account_id] = (sequence, balance)
            entries.append(
                Entry(
                    id=new_id(),
                    transaction_id=txn.id,
                    account_id=leg.account_id,
                    direction=leg.direction,
                    amount=leg.money.amount,
                    currency=leg.money.currency,
                    sequence=sequence,
                    balance_after=balance,
                    created_at=txn.created_at,
                    payment_id=txn.payment_id,
                )
            )
        touched = {leg.account_id for leg in txn.legs}
        for account_id in touched:
            balance = running[account_id][1]
            state = self.states[account_id]
            if state.account.may_go_negative:
                continue
            still_held = state.held - self.released_holds.get(account_id, 0)
            if balance - still_held < 0:
                raise InsufficientFunds("the account's available balance does not cover this posting")
        return entries


@dataclass(frozen=True, slots=True)
class Hold:
    """Funds reserved on an account (an authorization): they reduce the available balance
    until captured, released or expired."""

    id: uuid.UUID
    account_id: uuid.UUID
    money: Money
    payment_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None

    def __post_init__(self) -> None:
        if self.money.amount <= 0:
            raise LedgerError("a hold's amount must be positive")


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: uuid.UUID
    currency: str
    posted: int
    held: int

    @property
    def available(self) -> int:
        return self.posted - self.held
