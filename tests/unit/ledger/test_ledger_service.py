"""The Ledger facade over the in-memory store: postings, holds, reversals, history, verify.
Also pins down that the fake store refuses what the database refuses."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from kora.kernel import FixedClock, Money
from kora.ledger import (
    Account,
    AccountKind,
    AccountNotFound,
    CurrencyMismatch,
    Direction,
    HoldNotActive,
    InsufficientFunds,
    JournalTransaction,
    Ledger,
    LedgerError,
    Leg,
    UnbalancedTransaction,
)
from kora.ledger.domain.model import AccountState, PostingPlan
from tests.fakes import StorageRefusedError, make_ledger

DEBIT, CREDIT = Direction.DEBIT, Direction.CREDIT


def xof(amount: int) -> Money:
    return Money(amount, "XOF")


async def funded_wallet(ledger: Ledger, amount: int) -> tuple[Account, Account]:
    wallet = await ledger.open_wallet(uuid.uuid4(), "XOF")
    clearing = await ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "sandbox")
    await ledger.post(
        kind="cash_in.capture",
        legs=[Leg(clearing.id, DEBIT, xof(amount)), Leg(wallet.id, CREDIT, xof(amount))],
        payment_id=None,
        correlation_id=None,
    )
    return wallet, clearing


async def test_accounts_are_created_once_per_kind_owner_and_currency() -> None:
    ledger, store = make_ledger()
    owner = uuid.uuid4()
    wallet = await ledger.open_wallet(owner, "XOF")
    assert await ledger.open_wallet(owner, "XOF") == wallet
    assert (await ledger.open_wallet(owner, "EUR")).id != wallet.id
    assert (wallet.kind, wallet.owner_ref, wallet.currency) == (AccountKind.WALLET, str(owner), "XOF")
    clearing = await ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "orange")
    assert await ledger.system_account(AccountKind.PROVIDER_CLEARING, "XOF", "orange") == clearing
    assert (await ledger.system_account(AccountKind.FEE_REVENUE, "XOF")).owner_ref == "kora"
    assert await ledger.account(wallet.id) == wallet
    assert await ledger.account(uuid.uuid4()) is None
    assert len(store.state.accounts) == 4


async def test_a_posting_appends_entries_and_moves_balances() -> None:
    clock = FixedClock()
    ledger, _ = make_ledger(clock=clock)
    wallet, clearing = await funded_wallet(ledger, 1000)
    payment_id = uuid.uuid4()
    txn, entries = await ledger.post(
        kind="cash_out.capture",
        legs=[Leg(wallet.id, DEBIT, xof(400)), Leg(clearing.id, CREDIT, xof(400))],
        payment_id=payment_id,
        correlation_id="corr",
    )
    assert [(e.sequence, e.balance_after) for e in entries] == [(2, 600), (2, 600)]
    assert all(e.payment_id == payment_id and e.created_at == clock.now() for e in entries)
    assert (txn.payment_id, txn.correlation_id, txn.created_at) == (payment_id, "corr", clock.now())
    assert (await ledger.balance(wallet.id)).posted == 600
    assert (await ledger.balance(clearing.id)).posted == 600
    assert await ledger.transaction_for_payment(payment_id, "cash_out.capture") == txn
    assert await ledger.transaction_for_payment(payment_id, "cash_out.settlement") is None
    assert ledger.last_posting_seconds >= 0
    assert (await ledger.verify()).ok


async def test_a_refused_posting_appends_nothing() -> None:
    ledger, store = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 100)
    before = store.state.all_entries()
    with pytest.raises(InsufficientFunds):
        await ledger.post(
            kind="t",
            legs=[Leg(wallet.id, DEBIT, xof(101)), Leg(clearing.id, CREDIT, xof(101))],
            payment_id=None,
            correlation_id=None,
        )
    with pytest.raises(UnbalancedTransaction):
        await ledger.post(
            kind="t",
            legs=[Leg(wallet.id, DEBIT, xof(10)), Leg(clearing.id, CREDIT, xof(9))],
            payment_id=None,
            correlation_id=None,
        )
    with pytest.raises(AccountNotFound):
        await ledger.post(
            kind="t",
            legs=[Leg(clearing.id, DEBIT, xof(10)), Leg(uuid.uuid4(), CREDIT, xof(10))],
            payment_id=None,
            correlation_id=None,
        )
    euro = await ledger.system_account(AccountKind.SUSPENSE, "EUR")
    with pytest.raises(CurrencyMismatch):
        await ledger.post(
            kind="t",
            legs=[Leg(euro.id, DEBIT, xof(10)), Leg(wallet.id, CREDIT, xof(10))],
            payment_id=None,
            correlation_id=None,
        )
    assert store.state.all_entries() == before
    assert (await ledger.balance(wallet.id)).posted == 100


async def test_holds_reserve_funds_until_released() -> None:
    clock = FixedClock()
    ledger, store = make_ledger(clock=clock)
    wallet, clearing = await funded_wallet(ledger, 1000)
    payment_id = uuid.uuid4()
    expires = clock.now() + timedelta(minutes=15)
    hold = await ledger.place_hold(wallet.id, xof(800), payment_id=payment_id, expires_at=expires)
    assert (hold.account_id, hold.money, hold.payment_id, hold.expires_at) == (
        wallet.id,
        xof(800),
        payment_id,
        expires,
    )
    balance = await ledger.balance(wallet.id)
    assert (balance.posted, balance.held, balance.available) == (1000, 800, 200)
    with pytest.raises(InsufficientFunds):
        await ledger.place_hold(wallet.id, xof(201), payment_id=None)
    with pytest.raises(InsufficientFunds):
        await ledger.post(
            kind="t",
            legs=[Leg(wallet.id, DEBIT, xof(201)), Leg(clearing.id, CREDIT, xof(201))],
            payment_id=None,
            correlation_id=None,
        )
    assert await ledger.release_hold(hold.id) == hold
    assert store.hold_status(hold.id) == "released"
    assert (await ledger.balance(wallet.id)).available == 1000
    with pytest.raises(HoldNotActive):
        await ledger.release_hold(hold.id)


async def test_a_hold_must_be_in_the_account_currency_and_on_a_known_account() -> None:
    ledger, _ = make_ledger()
    wallet, _ = await funded_wallet(ledger, 1000)
    with pytest.raises(CurrencyMismatch):
        await ledger.place_hold(wallet.id, Money(10, "EUR"), payment_id=None)
    with pytest.raises(AccountNotFound):
        await ledger.place_hold(uuid.uuid4(), xof(10), payment_id=None)


async def test_internal_accounts_take_holds_without_funds() -> None:
    ledger, _ = make_ledger()
    suspense = await ledger.system_account(AccountKind.SUSPENSE, "XOF")
    await ledger.place_hold(suspense.id, xof(10), payment_id=None)
    assert (await ledger.balance(suspense.id)).available == -10


async def test_capturing_a_hold_spends_the_reserved_funds_once() -> None:
    ledger, store = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 1000)
    hold = await ledger.place_hold(wallet.id, xof(1000), payment_id=None)
    legs = [Leg(wallet.id, DEBIT, xof(1000)), Leg(clearing.id, CREDIT, xof(1000))]
    await ledger.post(kind="capture", legs=legs, payment_id=None, correlation_id=None, capture_holds=[hold.id])
    assert store.hold_status(hold.id) == "captured"
    balance = await ledger.balance(wallet.id)
    assert (balance.posted, balance.held) == (0, 0)
    with pytest.raises(HoldNotActive):
        await ledger.post(kind="capture", legs=legs, payment_id=None, correlation_id=None, capture_holds=[hold.id])


async def test_a_reversal_restores_every_balance() -> None:
    ledger, _ = make_ledger()
    wallet, _ = await funded_wallet(ledger, 1000)
    other = await ledger.open_wallet(uuid.uuid4(), "XOF")
    original, _ = await ledger.post(
        kind="p2p",
        legs=[Leg(wallet.id, DEBIT, xof(300)), Leg(other.id, CREDIT, xof(300))],
        payment_id=uuid.uuid4(),
        correlation_id=None,
    )
    mirror, entries = await ledger.reverse(original, correlation_id="undo")
    assert mirror.reverses_id == original.id
    assert mirror.kind == "p2p.reversal"
    assert [(e.account_id, e.direction) for e in entries] == [(wallet.id, CREDIT), (other.id, DEBIT)]
    assert (await ledger.balance(wallet.id)).posted == 1000
    assert (await ledger.balance(other.id)).posted == 0
    assert (await ledger.verify()).ok


async def test_a_reversal_cannot_overdraw_the_payee() -> None:
    ledger, _ = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 1000)
    other = await ledger.open_wallet(uuid.uuid4(), "XOF")
    original, _ = await ledger.post(
        kind="p2p",
        legs=[Leg(wallet.id, DEBIT, xof(300)), Leg(other.id, CREDIT, xof(300))],
        payment_id=None,
        correlation_id=None,
    )
    await ledger.post(
        kind="spend",
        legs=[Leg(other.id, DEBIT, xof(1)), Leg(clearing.id, CREDIT, xof(1))],
        payment_id=None,
        correlation_id=None,
    )
    with pytest.raises(InsufficientFunds):
        await ledger.reverse(original, correlation_id=None)


async def test_history_is_newest_first_and_pages_by_sequence() -> None:
    ledger, _ = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 10)
    for amount in (20, 30, 40):
        await ledger.post(
            kind="t",
            legs=[Leg(clearing.id, DEBIT, xof(amount)), Leg(wallet.id, CREDIT, xof(amount))],
            payment_id=None,
            correlation_id=None,
        )
    page = await ledger.history(wallet.id, limit=2)
    assert [(e.sequence, e.balance_after) for e in page] == [(4, 100), (3, 60)]
    page = await ledger.history(wallet.id, limit=2, before_sequence=3)
    assert [e.sequence for e in page] == [2, 1]
    assert await ledger.history(wallet.id, limit=2, before_sequence=1) == []


async def test_verify_counts_what_it_checked() -> None:
    ledger, _ = make_ledger()
    await funded_wallet(ledger, 10)
    report = await ledger.verify()
    assert report.as_dict() == {
        "ok": True,
        "transactions_checked": 1,
        "accounts_checked": 2,
        "entries_checked": 2,
        "violations": [],
    }


# ---------------------------------------------------------------- the fake refuses what the DB refuses
async def test_the_store_refuses_a_duplicate_account_sequence() -> None:
    ledger, store = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 100)
    first = store.state.entries[wallet.id][0]
    clearing_first = store.state.entries[clearing.id][0]
    txn = JournalTransaction.create(
        kind="replay",
        legs=[Leg(clearing.id, DEBIT, xof(100)), Leg(wallet.id, CREDIT, xof(100))],
        at=first.created_at,
    )
    again = [
        dataclasses.replace(clearing_first, id=uuid.uuid4(), transaction_id=txn.id),
        dataclasses.replace(first, id=uuid.uuid4(), transaction_id=txn.id),
    ]
    before = store.state.all_entries()
    with pytest.raises(StorageRefusedError, match=r"duplicate \(account, sequence\)"):
        await store.append(txn, again)
    assert store.state.all_entries() == before
    assert txn.id not in store.state.transactions


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sequence": 3}, "gap"),
        ({"balance_after": 999}, "should be"),
        ({"currency": "XAF"}, "currency"),
    ],
)
async def test_the_store_refuses_an_entry_that_breaks_the_chain(change: dict[str, object], message: str) -> None:
    ledger, store = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 100)
    txn = JournalTransaction.create(
        kind="t",
        legs=[Leg(clearing.id, DEBIT, xof(5)), Leg(wallet.id, CREDIT, xof(5))],
        at=FixedClock().now(),
    )
    entries = PostingPlan(await store.lock_accounts([wallet.id, clearing.id])).entries_for(txn)
    entries[1] = dataclasses.replace(entries[1], **change)  # type: ignore[arg-type]
    with pytest.raises(StorageRefusedError, match=message):
        await store.append(txn, entries)
    assert len(store.state.entries[wallet.id]) == 1


async def test_the_store_refuses_fewer_than_two_entries_and_unbalanced_ones() -> None:
    ledger, store = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 100)
    txn = JournalTransaction.create(
        kind="t",
        legs=[Leg(clearing.id, DEBIT, xof(5)), Leg(wallet.id, CREDIT, xof(5))],
        at=FixedClock().now(),
    )
    entries = PostingPlan(await store.lock_accounts([wallet.id, clearing.id])).entries_for(txn)
    with pytest.raises(StorageRefusedError, match="at least two"):
        await store.append(txn, entries[:1])
    lopsided = [entries[0], dataclasses.replace(entries[1], direction=DEBIT, balance_after=95)]
    with pytest.raises(StorageRefusedError, match="does not balance"):
        await store.append(txn, lopsided)
    await store.append(txn, entries)
    with pytest.raises(StorageRefusedError, match="duplicate journal transaction"):
        await store.append(txn, entries)


async def test_the_store_refuses_a_negative_wallet_entry() -> None:
    ledger, store = make_ledger()
    wallet, clearing = await funded_wallet(ledger, 100)
    txn = JournalTransaction.create(
        kind="t",
        legs=[Leg(wallet.id, DEBIT, xof(101)), Leg(clearing.id, CREDIT, xof(101))],
        at=FixedClock().now(),
    )
    states = await store.lock_accounts([wallet.id, clearing.id])
    # Pretend the wallet may go negative to get past the plan's own check.
    lenient = {
        aid: AccountState(dataclasses.replace(s.account, kind=AccountKind.SUSPENSE), s.last_sequence, s.balance, s.held)
        for aid, s in states.items()
    }
    entries = PostingPlan(lenient).entries_for(txn)
    with pytest.raises(StorageRefusedError):
        await store.append(txn, entries)


@pytest.mark.parametrize("amount", [0, -500])
async def test_the_domain_refuses_a_non_positive_hold(amount: int) -> None:
    ledger, store = make_ledger()
    wallet, _ = await funded_wallet(ledger, 1000)
    with pytest.raises(LedgerError) as caught:
        await ledger.place_hold(wallet.id, xof(amount), payment_id=None)
    assert not isinstance(caught.value, StorageRefusedError), "refused by the storage, not by the domain"
    assert store.state.holds == {}
