"""Property-based tests: whatever sequence of postings, holds, captures and reversals is
thrown at the Ledger, the books stay balanced, every balance is the sum of its entries,
customer money is never negative, and a refusal happens exactly when the available balance
is short. Corrupting a copy of the entries is caught by the invariant named after it."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kora.kernel import FixedClock, Money
from kora.ledger import (
    Account,
    AccountKind,
    Direction,
    Entry,
    HoldNotActive,
    InsufficientFunds,
    JournalTransaction,
    Ledger,
    Leg,
    verify_entries,
)
from tests.fakes import InMemoryLedgerStore, make_ledger

CURRENCIES = ("XOF", "GHS", "EUR")
# The chart of accounts each currency gets, by index.
KINDS = (
    AccountKind.WALLET,
    AccountKind.WALLET,
    AccountKind.WALLET,
    AccountKind.MERCHANT,
    AccountKind.PROVIDER_CLEARING,
    AccountKind.SETTLEMENT_BANK,
    AccountKind.FEE_REVENUE,
    AccountKind.SUSPENSE,
)
CUSTOMER_INDICES = tuple(i for i, kind in enumerate(KINDS) if kind in (AccountKind.WALLET, AccountKind.MERCHANT))
# Written out here rather than taken from the domain, so the recomputation is independent.
DEBIT_NORMAL = frozenset({AccountKind.PROVIDER_CLEARING, AccountKind.SETTLEMENT_BANK})
NEVER_NEGATIVE = frozenset({AccountKind.WALLET, AccountKind.MERCHANT})

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- operations
@dataclass(frozen=True)
class Post:
    currency: int
    debits: tuple[tuple[int, int], ...]  # (account index, amount)
    credits: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PlaceHold:
    currency: int
    account: int
    amount: int


@dataclass(frozen=True)
class ReleaseHold:
    pick: int


@dataclass(frozen=True)
class CaptureHold:
    pick: int
    to: int


@dataclass(frozen=True)
class Reverse:
    pick: int


Operation = Post | PlaceHold | ReleaseHold | CaptureHold | Reverse

amounts = st.integers(min_value=1, max_value=2_000)
currency_indices = st.integers(min_value=0, max_value=len(CURRENCIES) - 1)


@st.composite
def posts(draw: st.DrawFn) -> Post:
    """A balanced posting; an account is never on both sides."""
    order = draw(st.permutations(range(len(KINDS))))
    n_debits = draw(st.integers(1, 2))
    n_credits = draw(st.integers(1, 2))
    debit_amounts = draw(st.lists(amounts, min_size=n_debits, max_size=n_debits))
    total = sum(debit_amounts)
    cut = draw(st.integers(1, total - 1)) if n_credits == 2 and total > 1 else total
    credit_amounts = [cut, total - cut] if cut < total else [total]
    return Post(
        currency=draw(currency_indices),
        debits=tuple(zip(order[:n_debits], debit_amounts, strict=True)),
        credits=tuple(zip(order[n_debits : n_debits + len(credit_amounts)], credit_amounts, strict=True)),
    )


operations: st.SearchStrategy[Operation] = st.one_of(
    posts(),
    posts(),
    st.builds(PlaceHold, currency_indices, st.sampled_from(CUSTOMER_INDICES), amounts),
    st.builds(ReleaseHold, st.integers(0, 50)),
    st.builds(CaptureHold, st.integers(0, 50), st.integers(0, len(KINDS) - 1)),
    st.builds(Reverse, st.integers(0, 50)),
)


# ---------------------------------------------------------------- an independent model
@dataclass
class Model:
    """What the ledger should hold, computed without the ledger's code."""

    accounts: dict[int, list[Account]]  # currency index -> accounts by KINDS index
    balances: dict[uuid.UUID, int] = field(default_factory=lambda: defaultdict(int))
    holds: dict[uuid.UUID, tuple[uuid.UUID, int]] = field(default_factory=dict)  # active
    closed_holds: list[uuid.UUID] = field(default_factory=list)
    all_holds: list[uuid.UUID] = field(default_factory=list)
    committed: list[JournalTransaction] = field(default_factory=list)
    refusals: int = 0

    def kind(self, account_id: uuid.UUID) -> AccountKind:
        return next(a.kind for accs in self.accounts.values() for a in accs if a.id == account_id)

    def held(self, account_id: uuid.UUID) -> int:
        return sum(amount for aid, amount in self.holds.values() if aid == account_id)

    def after(self, legs: list[Leg]) -> dict[uuid.UUID, int]:
        result = {leg.account_id: self.balances[leg.account_id] for leg in legs}
        for leg in legs:
            debit_normal = self.kind(leg.account_id) in DEBIT_NORMAL
            increases = (leg.direction is Direction.DEBIT) == debit_normal
            result[leg.account_id] += leg.money.amount if increases else -leg.money.amount
        return result

    def refuses(self, legs: list[Leg], released: dict[uuid.UUID, int]) -> bool:
        return any(
            self.kind(aid) in NEVER_NEGATIVE and balance - (self.held(aid) - released.get(aid, 0)) < 0
            for aid, balance in self.after(legs).items()
        )


async def open_chart(ledger: Ledger) -> dict[int, list[Account]]:
    chart: dict[int, list[Account]] = {}
    for c, code in enumerate(CURRENCIES):
        accounts = []
        for i, kind in enumerate(KINDS):
            if kind is AccountKind.WALLET:
                accounts.append(await ledger.open_wallet(uuid.uuid4(), code))
            else:
                accounts.append(await ledger.system_account(kind, code, f"owner-{i}"))
        chart[c] = accounts
    return chart


async def post_or_refuse(
    ledger: Ledger,
    store: InMemoryLedgerStore,
    model: Model,
    legs: list[Leg],
    *,
    capture: uuid.UUID | None = None,
    mirror_of: JournalTransaction | None = None,
) -> None:
    """Apply one posting as its own unit of work: on refusal, nothing it did is kept."""
    released = {model.holds[capture][0]: model.holds[capture][1]} if capture else {}
    expect_refusal = model.refuses(legs, released)
    snapshot = store.snapshot()
    try:
        if mirror_of is not None:
            txn, _ = await ledger.reverse(mirror_of, correlation_id=None)
        else:
            txn, _ = await ledger.post(
                kind="prop",
                legs=legs,
                payment_id=None,
                correlation_id=None,
                capture_holds=[capture] if capture else (),
            )
    except InsufficientFunds:
        store.restore(snapshot)
        assert expect_refusal, "the ledger refused a posting the available balances cover"
        model.refusals += 1
        return
    assert not expect_refusal, "the ledger accepted a posting that overdraws customer money"
    model.balances.update(model.after(legs))
    if capture:
        del model.holds[capture]
        model.closed_holds.append(capture)
    model.committed.append(txn)


async def apply(ledger: Ledger, store: InMemoryLedgerStore, model: Model, op: Operation) -> None:
    if isinstance(op, Post):
        accounts = model.accounts[op.currency]
        code = CURRENCIES[op.currency]
        legs = [Leg(accounts[i].id, Direction.DEBIT, Money(a, code)) for i, a in op.debits] + [
            Leg(accounts[i].id, Direction.CREDIT, Money(a, code)) for i, a in op.credits
        ]
        await post_or_refuse(ledger, store, model, legs)
    elif isinstance(op, PlaceHold):
        account = model.accounts[op.currency][op.account]
        available = model.balances[account.id] - model.held(account.id)
        try:
            hold = await ledger.place_hold(account.id, Money(op.amount, account.currency), payment_id=None)
        except InsufficientFunds:
            assert op.amount > available
            model.refusals += 1
            return
        assert op.amount <= available
        model.holds[hold.id] = (account.id, op.amount)
        model.all_holds.append(hold.id)
    elif isinstance(op, ReleaseHold):
        if not model.all_holds:
            return
        hold_id = model.all_holds[op.pick % len(model.all_holds)]
        if hold_id in model.holds:
            await ledger.release_hold(hold_id)
            del model.holds[hold_id]
            model.closed_holds.append(hold_id)
        else:
            try:
                await ledger.release_hold(hold_id)
            except HoldNotActive:
                return
            raise AssertionError("a closed hold was released twice")
    elif isinstance(op, CaptureHold):
        if not model.holds:
            return
        hold_id = list(model.holds)[op.pick % len(model.holds)]
        account_id, amount = model.holds[hold_id]
        currency = next(c for c, accs in model.accounts.items() if any(a.id == account_id for a in accs))
        targets = [a for a in model.accounts[currency] if a.id != account_id]
        target = targets[op.to % len(targets)]
        money = Money(amount, CURRENCIES[currency])
        legs = [Leg(account_id, Direction.DEBIT, money), Leg(target.id, Direction.CREDIT, money)]
        await post_or_refuse(ledger, store, model, legs, capture=hold_id)
    elif isinstance(op, Reverse):
        if not model.committed:
            return
        original = model.committed[op.pick % len(model.committed)]
        mirror_legs = [
            Leg(
                leg.account_id,
                Direction.CREDIT if leg.direction is Direction.DEBIT else Direction.DEBIT,
                leg.money,
            )
            for leg in original.legs
        ]
        await post_or_refuse(ledger, store, model, mirror_legs, mirror_of=original)


OPENING_BALANCE = 3_000


async def run(ops: list[Operation]) -> tuple[Ledger, InMemoryLedgerStore, Model]:
    """A fresh ledger whose customer accounts open with some money (from suspense), then `ops`."""
    ledger, store = make_ledger(clock=FixedClock())
    model = Model(await open_chart(ledger))
    suspense = KINDS.index(AccountKind.SUSPENSE)
    for c in range(len(CURRENCIES)):
        for i in CUSTOMER_INDICES:
            await apply(ledger, store, model, Post(c, ((suspense, OPENING_BALANCE),), ((i, OPENING_BALANCE),)))
    for op in ops:
        await apply(ledger, store, model, op)
    return ledger, store, model


# ---------------------------------------------------------------- independent recomputation
def recompute(accounts: dict[uuid.UUID, Account], entries: list[Entry]) -> dict[uuid.UUID, int]:
    """Check the books without the ledger's code; return each account's balance."""
    per_txn: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    legs_per_txn: dict[uuid.UUID, int] = defaultdict(int)
    per_account: dict[uuid.UUID, list[Entry]] = defaultdict(list)
    for entry in entries:
        per_txn[entry.transaction_id][entry.currency] += (
            entry.amount if entry.direction is Direction.DEBIT else -entry.amount
        )
        legs_per_txn[entry.transaction_id] += 1
        per_account[entry.account_id].append(entry)
    for txn_id, totals in per_txn.items():
        assert legs_per_txn[txn_id] >= 2
        assert all(total == 0 for total in totals.values()), f"transaction {txn_id} does not balance: {totals}"
    balances: dict[uuid.UUID, int] = {}
    for account_id, rows in per_account.items():
        account = accounts[account_id]
        running = 0
        for expected_sequence, entry in enumerate(sorted(rows, key=lambda e: e.sequence), start=1):
            assert entry.sequence == expected_sequence
            assert entry.currency == account.currency
            debit_normal = account.kind in DEBIT_NORMAL
            running += entry.amount if (entry.direction is Direction.DEBIT) == debit_normal else -entry.amount
            assert entry.balance_after == running
            if account.kind in NEVER_NEGATIVE:
                assert running >= 0, "customer money went negative"
        balances[account_id] = running
    return balances


# ---------------------------------------------------------------- properties
@SETTINGS
@given(ops=st.lists(operations, max_size=60))
async def test_any_sequence_of_postings_keeps_the_books(ops: list[Operation]) -> None:
    ledger, store, model = await run(ops)
    accounts = dict(store.state.accounts)
    entries = [e async for e in store.all_entries_ordered()]

    report = verify_entries([a async for a in store.all_accounts()], entries)
    assert report.ok, report.violations
    assert report.entries_checked == len(entries)
    assert report.transactions_checked == len(store.state.transactions) == len(model.committed)
    assert (await ledger.verify()).ok

    recomputed = recompute(accounts, entries)
    for account_id, account in accounts.items():
        balance = await ledger.balance(account_id)
        assert balance.posted == recomputed.get(account_id, 0) == model.balances[account_id]
        assert balance.held == model.held(account_id)
        if account.kind in NEVER_NEGATIVE:
            assert balance.available >= 0
    for hold_id in model.closed_holds:
        assert store.hold_status(hold_id) in ("captured", "released")
    for hold_id in model.holds:
        assert store.hold_status(hold_id) == "active"


@SETTINGS
@given(ops=st.lists(operations, max_size=25))
async def test_money_is_neither_created_nor_destroyed(ops: list[Operation]) -> None:
    """Per currency, debit-normal balances equal credit-normal balances (assets = liabilities + income)."""
    _, store, model = await run(ops)
    for c in range(len(CURRENCIES)):
        assets = sum(model.balances[a.id] for a in model.accounts[c] if a.kind in DEBIT_NORMAL)
        others = sum(model.balances[a.id] for a in model.accounts[c] if a.kind not in DEBIT_NORMAL)
        stored = {a.id: (await store.balance(a.id)).posted for a in model.accounts[c]}
        assert sum(v for aid, v in stored.items() if model.kind(aid) in DEBIT_NORMAL) == assets
        assert assets == others


TAMPERINGS = ("balance_after", "skip_sequence", "amount", "negative", "drop")


@SETTINGS
@given(ops=st.lists(operations, min_size=1, max_size=25), tampering=st.sampled_from(TAMPERINGS), data=st.data())
async def test_a_tampered_copy_is_reported_by_the_right_check(
    ops: list[Operation], tampering: str, data: st.DataObject
) -> None:
    _, store, _ = await run(ops)
    accounts = list(store.state.accounts.values())
    by_id = {a.id: a for a in accounts}
    entries = store.state.all_entries()
    candidates = entries
    if tampering == "negative":
        candidates = [e for e in entries if by_id[e.account_id].kind in NEVER_NEGATIVE]
    assume(candidates)
    victim = data.draw(st.sampled_from(candidates), label="victim")
    index = entries.index(victim)
    same_account_after = [
        i for i, e in enumerate(entries) if e.account_id == victim.account_id and e.sequence > victim.sequence
    ]
    copy = list(entries)

    if tampering == "balance_after":
        copy[index] = dataclasses.replace(victim, balance_after=victim.balance_after + data.draw(amounts))
        expected = {"BalanceMatchesEntries"}
    elif tampering == "skip_sequence":
        for i in [index, *same_account_after]:
            copy[i] = dataclasses.replace(copy[i], sequence=copy[i].sequence + 1)
        expected = {"BalanceMatchesEntries"}
    elif tampering == "amount":
        delta = data.draw(amounts)
        account = by_id[victim.account_id]
        debit_normal = account.kind in DEBIT_NORMAL
        shift = delta if (victim.direction is Direction.DEBIT) == debit_normal else -delta
        copy[index] = dataclasses.replace(
            victim, amount=victim.amount + delta, balance_after=victim.balance_after + shift
        )
        for i in same_account_after:  # keep the chain consistent: only the transaction is off
            copy[i] = dataclasses.replace(copy[i], balance_after=copy[i].balance_after + shift)
        went_negative = account.kind in NEVER_NEGATIVE and any(
            copy[i].balance_after < 0 for i in [index, *same_account_after]
        )
        expected = {"EntriesBalance"} | ({"NoNegativeWallet"} if went_negative else set())
    elif tampering == "negative":
        copy[index] = dataclasses.replace(victim, balance_after=-1)
        expected = {"NoNegativeWallet", "BalanceMatchesEntries"}
    else:  # drop
        del copy[index]
        expected = {"EntriesBalance"} | ({"BalanceMatchesEntries"} if same_account_after else set())

    assert verify_entries(accounts, entries).ok
    report = verify_entries(accounts, copy)
    assert {v.check for v in report.violations} == expected, report.violations
    if tampering == "skip_sequence":
        assert [v.detail for v in report.violations] == [f"sequence {victim.sequence + 1} after {victim.sequence - 1}"]
