"""Named ledger invariants. Each check consumes rows and reports violations; the same checks
run in the tests, from `kora ledger verify`, from the admin API and on a schedule."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from kora.ledger.domain.model import Account, Direction, Entry, signed_effect


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    subject: str
    detail: str


@dataclass
class InvariantReport:
    transactions_checked: int = 0
    accounts_checked: int = 0
    entries_checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "transactions_checked": self.transactions_checked,
            "accounts_checked": self.accounts_checked,
            "entries_checked": self.entries_checked,
            "violations": [{"check": v.check, "subject": v.subject, "detail": v.detail} for v in self.violations],
        }


class EntriesBalance:
    """Every journal transaction's debits equal its credits, per currency, with >= 2 entries."""

    name = "EntriesBalance"

    def __init__(self) -> None:
        self._totals: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._counts: dict[uuid.UUID, int] = defaultdict(int)

    def feed(self, entry: Entry) -> None:
        sign = 1 if entry.direction is Direction.DEBIT else -1
        self._totals[entry.transaction_id][entry.currency] += sign * entry.amount
        self._counts[entry.transaction_id] += 1

    def finish(self, report: InvariantReport) -> None:
        report.transactions_checked = len(self._counts)
        for txn_id, per_currency in self._totals.items():
            for code, total in per_currency.items():
                if total != 0:
                    report.violations.append(Violation(self.name, str(txn_id), f"{code} debits-credits = {total}"))
            if self._counts[txn_id] < 2:
                report.violations.append(Violation(self.name, str(txn_id), "fewer than two entries"))


class BalanceMatchesEntries:
    """Per account, sequences run 1..n without gaps and each `balance_after` equals the
    previous one plus the entry's effect; the currency is the account's. Feed entries
    ordered by (account, sequence)."""

    name = "BalanceMatchesEntries"

    def __init__(self, accounts: dict[uuid.UUID, Account]) -> None:
        self._accounts = accounts
        self._last: dict[uuid.UUID, tuple[int, int]] = {}
        self.violations: list[Violation] = []

    def feed(self, entry: Entry) -> None:
        account = self._accounts.get(entry.account_id)
        if account is None:
            self.violations.append(Violation(self.name, str(entry.id), "entry on an unknown account"))
            return
        sequence, balance = self._last.get(entry.account_id, (0, 0))
        expected = balance + signed_effect(account.normal_side, entry.direction, entry.amount)
        if entry.sequence != sequence + 1:
            self.violations.append(
                Violation(self.name, str(entry.account_id), f"sequence {entry.sequence} after {sequence}")
            )
        if entry.balance_after != expected:
            self.violations.append(
                Violation(
                    self.name,
                    str(entry.account_id),
                    f"entry #{entry.sequence} balance_after {entry.balance_after} != {expected}",
                )
            )
        if entry.currency != account.currency:
            self.violations.append(Violation(self.name, str(entry.id), "currency differs from account's"))
        # Carry on from the recorded balance so one bad row is reported once, not forever.
        self._last[entry.account_id] = (entry.sequence, entry.balance_after)

    def finish(self, report: InvariantReport) -> None:
        report.violations.extend(self.violations)

    @property
    def balances(self) -> dict[uuid.UUID, int]:
        return {aid: bal for aid, (_, bal) in self._last.items()}


class NoNegativeWallet:
    """No customer wallet or merchant account ever shows a negative balance."""

    name = "NoNegativeWallet"

    def __init__(self, accounts: dict[uuid.UUID, Account]) -> None:
        self._accounts = accounts
        self.violations: list[Violation] = []

    def feed(self, entry: Entry) -> None:
        account = self._accounts.get(entry.account_id)
        if account is not None and not account.may_go_negative and entry.balance_after < 0:
            self.violations.append(
                Violation(self.name, str(entry.account_id), f"negative after entry #{entry.sequence}")
            )

    def finish(self, report: InvariantReport) -> None:
        report.violations.extend(self.violations)


class LedgerVerifier:
    """Runs every invariant over entries fed in (account_id, sequence) order."""

    def __init__(self, accounts: Iterable[Account]) -> None:
        self._accounts = {a.id: a for a in accounts}
        self.balance_check = BalanceMatchesEntries(self._accounts)
        self._checks = (EntriesBalance(), self.balance_check, NoNegativeWallet(self._accounts))
        self._report = InvariantReport(accounts_checked=len(self._accounts))

    def feed(self, entry: Entry) -> None:
        self._report.entries_checked += 1
        for check in self._checks:
            check.feed(entry)

    def finish(self) -> InvariantReport:
        for check in self._checks:
            check.finish(self._report)
        return self._report


def verify_entries(accounts: Iterable[Account], ordered_entries: Iterable[Entry]) -> InvariantReport:
    """Run every invariant over entries ordered by (account_id, sequence)."""
    verifier = LedgerVerifier(accounts)
    for entry in ordered_entries:
        verifier.feed(entry)
    return verifier.finish()
