"""The ledger's pure domain: balanced journal transactions, mirrored reversals, and the
posting plan that derives sequences and balances and refuses to overdraw customer money."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from kora.kernel import Money
from kora.ledger import (
    Account,
    AccountKind,
    AccountNotFound,
    CurrencyMismatch,
    Direction,
    InsufficientFunds,
    JournalTransaction,
    LedgerError,
    Leg,
    UnbalancedTransaction,
)
from kora.ledger.domain.model import AccountState, NormalSide, PostingPlan, signed_effect

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DEBIT, CREDIT = Direction.DEBIT, Direction.CREDIT


def an_account(kind: AccountKind, *, currency: str = "XOF") -> Account:
    return Account(uuid.uuid4(), kind, currency, "owner", AT)


def a_state(account: Account, *, sequence: int = 0, balance: int = 0, held: int = 0) -> AccountState:
    return AccountState(account, sequence, balance, held)


def xof(amount: int) -> Money:
    return Money(amount, "XOF")


def a_transfer(debit: Account, credit: Account, amount: int, *, kind: str = "test") -> JournalTransaction:
    money = Money(amount, debit.currency)
    return JournalTransaction.create(
        kind=kind, legs=[Leg(debit.id, DEBIT, money), Leg(credit.id, CREDIT, money)], at=AT
    )


# ---------------------------------------------------------------- accounts
@pytest.mark.parametrize(
    ("kind", "side", "may_go_negative"),
    [
        (AccountKind.WALLET, NormalSide.CREDIT, False),
        (AccountKind.MERCHANT, NormalSide.CREDIT, False),
        (AccountKind.FEE_REVENUE, NormalSide.CREDIT, True),
        (AccountKind.SUSPENSE, NormalSide.CREDIT, True),
        (AccountKind.PROVIDER_CLEARING, NormalSide.DEBIT, True),
        (AccountKind.SETTLEMENT_BANK, NormalSide.DEBIT, True),
    ],
)
def test_chart_of_accounts(kind: AccountKind, side: NormalSide, may_go_negative: bool) -> None:
    account = an_account(kind)
    assert account.normal_side is side
    assert account.may_go_negative is may_go_negative


def test_signed_effect_follows_the_normal_side() -> None:
    assert signed_effect(NormalSide.CREDIT, CREDIT, 7) == 7
    assert signed_effect(NormalSide.CREDIT, DEBIT, 7) == -7
    assert signed_effect(NormalSide.DEBIT, DEBIT, 7) == 7
    assert signed_effect(NormalSide.DEBIT, CREDIT, 7) == -7


@pytest.mark.parametrize("amount", [0, -5])
def test_a_leg_refuses_a_non_positive_amount(amount: int) -> None:
    with pytest.raises(LedgerError):
        Leg(uuid.uuid4(), DEBIT, xof(amount))


# ---------------------------------------------------------------- journal transactions
@pytest.mark.parametrize("count", [0, 1])
def test_a_transaction_needs_two_legs(count: int) -> None:
    legs = [Leg(uuid.uuid4(), DEBIT, xof(100))][:count]
    with pytest.raises(UnbalancedTransaction, match="at least two legs"):
        JournalTransaction.create(kind="test", legs=legs, at=AT)


@pytest.mark.parametrize(
    "legs",
    [
        [(DEBIT, 100, "XOF"), (CREDIT, 99, "XOF")],
        [(DEBIT, 100, "XOF"), (DEBIT, 100, "XOF")],
        [(DEBIT, 100, "XOF"), (CREDIT, 60, "XOF"), (CREDIT, 30, "XOF")],
        # Equal numbers in two currencies do not balance each other.
        [(DEBIT, 100, "XOF"), (CREDIT, 100, "XAF")],
        [(DEBIT, 100, "XOF"), (CREDIT, 100, "XOF"), (DEBIT, 5, "EUR"), (CREDIT, 4, "EUR")],
    ],
)
def test_an_unbalanced_transaction_is_refused(legs: list[tuple[Direction, int, str]]) -> None:
    with pytest.raises(UnbalancedTransaction, match="debits and credits differ"):
        JournalTransaction.create(kind="test", legs=[Leg(uuid.uuid4(), d, Money(a, c)) for d, a, c in legs], at=AT)


def test_a_balanced_transaction_keeps_its_legs_and_references() -> None:
    payment_id = uuid.uuid4()
    legs = [
        Leg(uuid.uuid4(), DEBIT, xof(100)),
        Leg(uuid.uuid4(), CREDIT, xof(97)),
        Leg(uuid.uuid4(), CREDIT, xof(3)),
        Leg(uuid.uuid4(), DEBIT, Money(250, "EUR")),
        Leg(uuid.uuid4(), CREDIT, Money(250, "EUR")),
    ]
    txn = JournalTransaction.create(kind="merchant", legs=legs, at=AT, payment_id=payment_id, correlation_id="c")
    assert txn.legs == tuple(legs)
    assert (txn.kind, txn.created_at, txn.payment_id, txn.correlation_id) == ("merchant", AT, payment_id, "c")
    assert txn.reverses_id is None


def test_a_reversal_mirrors_every_leg_as_a_new_transaction() -> None:
    payment_id = uuid.uuid4()
    original = JournalTransaction.create(
        kind="merchant",
        legs=[
            Leg(uuid.uuid4(), DEBIT, xof(100)),
            Leg(uuid.uuid4(), CREDIT, xof(98)),
            Leg(uuid.uuid4(), CREDIT, xof(2)),
        ],
        at=AT,
        payment_id=payment_id,
        correlation_id="first",
    )
    later = datetime(2026, 1, 2, tzinfo=UTC)
    mirror = original.reversal(at=later, correlation_id="second")
    assert mirror.id != original.id
    assert mirror.reverses_id == original.id
    assert mirror.kind == "merchant.reversal"
    assert (mirror.payment_id, mirror.correlation_id, mirror.created_at) == (payment_id, "second", later)
    assert [(leg.account_id, leg.money) for leg in mirror.legs] == [
        (leg.account_id, leg.money) for leg in original.legs
    ]
    assert all(m.direction is not o.direction for m, o in zip(mirror.legs, original.legs, strict=True))
    # The reversal of the reversal is the original again, leg for leg.
    assert mirror.reversal(at=later).legs == original.legs


# ---------------------------------------------------------------- posting plan
def test_entries_continue_each_account_chain() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    txn = a_transfer(clearing, wallet, 300)
    plan = PostingPlan({wallet.id: a_state(wallet, sequence=4, balance=1000), clearing.id: a_state(clearing)})
    debit, credit = plan.entries_for(txn)
    assert (debit.account_id, debit.direction, debit.sequence, debit.balance_after) == (
        clearing.id,
        DEBIT,
        1,
        300,
    )
    assert (credit.account_id, credit.direction, credit.sequence, credit.balance_after) == (
        wallet.id,
        CREDIT,
        5,
        1300,
    )
    for entry in (debit, credit):
        assert (entry.transaction_id, entry.amount, entry.currency, entry.created_at) == (
            txn.id,
            300,
            "XOF",
            AT,
        )
    assert debit.id != credit.id


@pytest.mark.parametrize(
    ("kind", "direction", "expected"),
    [
        (AccountKind.WALLET, CREDIT, 1100),
        (AccountKind.WALLET, DEBIT, 900),
        (AccountKind.FEE_REVENUE, CREDIT, 1100),
        (AccountKind.PROVIDER_CLEARING, DEBIT, 1100),
        (AccountKind.PROVIDER_CLEARING, CREDIT, 900),
        (AccountKind.SETTLEMENT_BANK, DEBIT, 1100),
        (AccountKind.SETTLEMENT_BANK, CREDIT, 900),
    ],
)
def test_balance_after_for_credit_and_debit_normal_accounts(
    kind: AccountKind, direction: Direction, expected: int
) -> None:
    account = an_account(kind)
    other = an_account(AccountKind.SUSPENSE)
    other_direction = CREDIT if direction is DEBIT else DEBIT
    txn = JournalTransaction.create(
        kind="test",
        legs=[Leg(account.id, direction, xof(100)), Leg(other.id, other_direction, xof(100))],
        at=AT,
    )
    plan = PostingPlan({account.id: a_state(account, sequence=9, balance=1000), other.id: a_state(other)})
    entry = plan.entries_for(txn)[0]
    assert (entry.sequence, entry.balance_after) == (10, expected)


def test_an_account_twice_in_one_transaction_gets_consecutive_sequences() -> None:
    wallet = an_account(AccountKind.WALLET)
    merchant = an_account(AccountKind.MERCHANT)
    fees = an_account(AccountKind.FEE_REVENUE)
    txn = JournalTransaction.create(
        kind="split",
        legs=[
            Leg(wallet.id, DEBIT, xof(60)),
            Leg(wallet.id, DEBIT, xof(40)),
            Leg(merchant.id, CREDIT, xof(97)),
            Leg(fees.id, CREDIT, xof(3)),
        ],
        at=AT,
    )
    plan = PostingPlan(
        {
            wallet.id: a_state(wallet, sequence=2, balance=100),
            merchant.id: a_state(merchant),
            fees.id: a_state(fees),
        }
    )
    entries = plan.entries_for(txn)
    assert [(e.sequence, e.balance_after) for e in entries] == [(3, 40), (4, 0), (1, 97), (1, 3)]


@pytest.mark.parametrize("kind", [AccountKind.WALLET, AccountKind.MERCHANT])
def test_customer_money_cannot_be_overdrawn(kind: AccountKind) -> None:
    account = an_account(kind)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    plan = PostingPlan({account.id: a_state(account, sequence=1, balance=99), clearing.id: a_state(clearing)})
    with pytest.raises(InsufficientFunds):
        plan.entries_for(a_transfer(account, clearing, 100))
    assert plan.entries_for(a_transfer(account, clearing, 99))[0].balance_after == 0


@pytest.mark.parametrize(
    "kind",
    [
        AccountKind.PROVIDER_CLEARING,
        AccountKind.SETTLEMENT_BANK,
        AccountKind.FEE_REVENUE,
        AccountKind.SUSPENSE,
    ],
)
def test_internal_accounts_may_go_negative(kind: AccountKind) -> None:
    internal = an_account(kind)
    wallet = an_account(AccountKind.WALLET)
    # Decrease the internal account, whatever its normal side.
    direction = CREDIT if internal.normal_side is NormalSide.DEBIT else DEBIT
    legs = [
        Leg(internal.id, direction, xof(500)),
        Leg(wallet.id, CREDIT if direction is DEBIT else DEBIT, xof(500)),
    ]
    if direction is CREDIT:  # the wallet is debited: fund it first
        states = {internal.id: a_state(internal), wallet.id: a_state(wallet, sequence=1, balance=500)}
    else:
        states = {internal.id: a_state(internal), wallet.id: a_state(wallet)}
    entries = PostingPlan(states).entries_for(JournalTransaction.create(kind="t", legs=legs, at=AT))
    assert entries[0].balance_after == -500


def test_holds_reduce_the_available_balance() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    states = {wallet.id: a_state(wallet, sequence=1, balance=1000, held=700), clearing.id: a_state(clearing)}
    assert states[wallet.id].available == 300
    with pytest.raises(InsufficientFunds):
        PostingPlan(states).entries_for(a_transfer(wallet, clearing, 301))
    assert PostingPlan(states).entries_for(a_transfer(wallet, clearing, 300))[0].balance_after == 700


def test_a_captured_hold_is_released_in_the_same_posting() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    states = {wallet.id: a_state(wallet, sequence=1, balance=1000, held=1000), clearing.id: a_state(clearing)}
    txn = a_transfer(wallet, clearing, 1000)
    with pytest.raises(InsufficientFunds):
        PostingPlan(states).entries_for(txn)
    entries = PostingPlan(states, released_holds={wallet.id: 1000}).entries_for(txn)
    assert entries[0].balance_after == 0
    # Releasing only part of what is held still leaves the rest reserved.
    with pytest.raises(InsufficientFunds):
        PostingPlan(states, released_holds={wallet.id: 999}).entries_for(txn)


def test_a_credit_to_a_fully_held_wallet_is_accepted() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    states = {wallet.id: a_state(wallet, sequence=1, balance=100, held=100), clearing.id: a_state(clearing)}
    assert PostingPlan(states).entries_for(a_transfer(clearing, wallet, 1))[1].balance_after == 101


def test_a_leg_on_an_unlocked_account_is_refused() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    with pytest.raises(AccountNotFound):
        PostingPlan({clearing.id: a_state(clearing)}).entries_for(a_transfer(clearing, wallet, 10))


def test_a_leg_in_another_currency_than_its_account_is_refused() -> None:
    wallet = an_account(AccountKind.WALLET, currency="XOF")
    clearing = an_account(AccountKind.PROVIDER_CLEARING, currency="EUR")
    txn = JournalTransaction.create(
        kind="t",
        legs=[Leg(clearing.id, DEBIT, Money(10, "EUR")), Leg(wallet.id, CREDIT, Money(10, "EUR"))],
        at=AT,
    )
    with pytest.raises(CurrencyMismatch):
        PostingPlan({clearing.id: a_state(clearing), wallet.id: a_state(wallet)}).entries_for(txn)


def test_no_entry_takes_customer_money_below_zero_even_inside_one_transaction() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    txn = JournalTransaction.create(
        kind="t",
        legs=[
            Leg(wallet.id, DEBIT, xof(100)),
            Leg(clearing.id, CREDIT, xof(100)),
            Leg(clearing.id, DEBIT, xof(100)),
            Leg(wallet.id, CREDIT, xof(100)),
        ],
        at=AT,
    )
    plan = PostingPlan({wallet.id: a_state(wallet), clearing.id: a_state(clearing)})
    try:
        entries = plan.entries_for(txn)
    except InsufficientFunds:
        return  # refusing the posting is a correct answer
    assert all(e.balance_after >= 0 for e in entries if e.account_id == wallet.id)
