"""The ledger's pure domain: accounts, journal transactions, entries, holds and invariants."""
