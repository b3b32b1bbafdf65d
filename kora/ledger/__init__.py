"""The ledger module's public interface. Only the ledger writes ledger tables; other modules
post through `Ledger` inside their unit of work."""

from kora.ledger.domain.invariants import InvariantReport, LedgerVerifier, Violation, verify_entries
from kora.ledger.domain.model import (
    Account,
    AccountKind,
    AccountNotFound,
    Balance,
    CurrencyMismatch,
    Direction,
    Entry,
    Hold,
    HoldNotActive,
    InsufficientFunds,
    JournalTransaction,
    LedgerError,
    LedgerStorageRefused,
    Leg,
    UnbalancedTransaction,
)
from kora.ledger.ports import LedgerStore
from kora.ledger.service import Ledger, PostingOutcome, PostingRequest

__all__ = [
    "Account",
    "AccountKind",
    "AccountNotFound",
    "Balance",
    "CurrencyMismatch",
    "Direction",
    "Entry",
    "Hold",
    "HoldNotActive",
    "InsufficientFunds",
    "InvariantReport",
    "JournalTransaction",
    "Ledger",
    "LedgerError",
    "LedgerStorageRefused",
    "LedgerStore",
    "LedgerVerifier",
    "Leg",
    "PostingOutcome",
    "PostingRequest",
    "UnbalancedTransaction",
    "Violation",
    "verify_entries",
]
