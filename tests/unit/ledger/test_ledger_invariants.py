"""The named invariants each catch the corruption they are named after, and only that."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from kora.ledger import Account, AccountKind, Direction, Entry, Violation, verify_entries

AT = datetime(2026, 1, 1, tzinfo=UTC)
DEBIT, CREDIT = Direction.DEBIT, Direction.CREDIT


def an_account(kind: AccountKind, currency: str = "XOF") -> Account:
    return Account(uuid.uuid4(), kind, currency, "owner", AT)


def an_entry(
    account: Account, txn: uuid.UUID, direction: Direction, amount: int, sequence: int, balance_after: int
) -> Entry:
    return Entry(uuid.uuid4(), txn, account.id, direction, amount, account.currency, sequence, balance_after, AT)


def ordered(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.account_id, e.sequence))


def checks(violations: list[Violation]) -> set[str]:
    return {v.check for v in violations}


def a_clean_ledger() -> tuple[list[Account], list[Entry], Account, Account]:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    entries = [
        an_entry(clearing, t1, DEBIT, 500, 1, 500),
        an_entry(wallet, t1, CREDIT, 500, 1, 500),
        an_entry(wallet, t2, DEBIT, 200, 2, 300),
        an_entry(clearing, t2, CREDIT, 200, 2, 300),
    ]
    return [wallet, clearing], ordered(entries), wallet, clearing


def test_a_clean_ledger_passes_and_is_counted() -> None:
    accounts, entries, _, _ = a_clean_ledger()
    report = verify_entries(accounts, entries)
    assert report.ok
    assert (report.transactions_checked, report.accounts_checked, report.entries_checked) == (2, 2, 4)


def test_an_unbalanced_transaction_is_entries_balance() -> None:
    accounts, entries, wallet, _clearing = a_clean_ledger()
    # Change one amount and keep the account's chain consistent: only the balance check can see it.
    tampered = [
        dataclasses.replace(e, amount=201, balance_after=299) if e.account_id == wallet.id and e.sequence == 2 else e
        for e in entries
    ]
    report = verify_entries(accounts, tampered)
    assert checks(report.violations) == {"EntriesBalance"}
    assert "debits-credits = 1" in report.violations[0].detail


def test_a_lone_entry_is_entries_balance() -> None:
    wallet = an_account(AccountKind.WALLET)
    suspense = an_account(AccountKind.SUSPENSE)
    txn = uuid.uuid4()
    entries = [an_entry(wallet, txn, CREDIT, 10, 1, 10), an_entry(suspense, uuid.uuid4(), DEBIT, 10, 1, -10)]
    report = verify_entries([wallet, suspense], ordered(entries))
    assert checks(report.violations) == {"EntriesBalance"}
    assert {v.detail for v in report.violations} >= {"fewer than two entries"}


def test_a_changed_balance_after_is_balance_matches_entries() -> None:
    accounts, entries, wallet, _ = a_clean_ledger()
    tampered = [
        dataclasses.replace(e, balance_after=999) if e.account_id == wallet.id and e.sequence == 1 else e
        for e in entries
    ]
    report = verify_entries(accounts, tampered)
    assert checks(report.violations) == {"BalanceMatchesEntries"}
    assert all(v.subject == str(wallet.id) for v in report.violations)


def test_a_skipped_sequence_is_balance_matches_entries() -> None:
    accounts, entries, wallet, _ = a_clean_ledger()
    tampered = [
        dataclasses.replace(e, sequence=3) if e.account_id == wallet.id and e.sequence == 2 else e for e in entries
    ]
    report = verify_entries(accounts, tampered)
    assert checks(report.violations) == {"BalanceMatchesEntries"}
    assert [v.detail for v in report.violations] == ["sequence 3 after 1"]


def test_an_entry_in_another_currency_or_on_an_unknown_account_is_balance_matches_entries() -> None:
    accounts, entries, wallet, _clearing = a_clean_ledger()
    ghost = an_account(AccountKind.WALLET)
    tampered = [dataclasses.replace(e, account_id=ghost.id) if e.account_id == wallet.id else e for e in entries]
    report = verify_entries(accounts, ordered(tampered))
    assert "entry on an unknown account" in {v.detail for v in report.violations}
    assert checks(report.violations) == {"BalanceMatchesEntries"}


def test_a_negative_wallet_is_no_negative_wallet() -> None:
    wallet = an_account(AccountKind.WALLET)
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    txn = uuid.uuid4()
    # Balanced and chained correctly, but customer money below zero.
    entries = [an_entry(wallet, txn, DEBIT, 100, 1, -100), an_entry(clearing, txn, CREDIT, 100, 1, -100)]
    report = verify_entries([wallet, clearing], ordered(entries))
    assert checks(report.violations) == {"NoNegativeWallet"}
    assert report.violations[0].subject == str(wallet.id)


def test_internal_accounts_may_be_negative() -> None:
    clearing = an_account(AccountKind.PROVIDER_CLEARING)
    bank = an_account(AccountKind.SETTLEMENT_BANK)
    txn = uuid.uuid4()
    entries = [an_entry(clearing, txn, CREDIT, 100, 1, -100), an_entry(bank, txn, DEBIT, 100, 1, 100)]
    assert verify_entries([clearing, bank], ordered(entries)).ok


def test_the_report_serialises_its_violations() -> None:
    accounts, entries, wallet, _ = a_clean_ledger()
    tampered = [
        dataclasses.replace(e, sequence=3) if e.account_id == wallet.id and e.sequence == 2 else e for e in entries
    ]
    as_dict = verify_entries(accounts, tampered).as_dict()
    assert as_dict["ok"] is False
    assert as_dict["violations"] == [
        {"check": "BalanceMatchesEntries", "subject": str(wallet.id), "detail": "sequence 3 after 1"}
    ]
