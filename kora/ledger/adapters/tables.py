"""Ledger tables. Entries and transactions are append-only: on PostgreSQL triggers reject
UPDATE/DELETE/TRUNCATE and a deferred constraint trigger rejects an unbalanced transaction
(see the Alembic migration)."""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

ACCOUNT_KINDS = ("wallet", "merchant", "provider_clearing", "settlement_bank", "fee_revenue", "suspense")

ledger_accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("owner_ref", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("kind", "owner_ref", "currency"),
    sa.CheckConstraint("kind IN ('" + "','".join(ACCOUNT_KINDS) + "')", name="kind_known"),
)

ledger_transactions = sa.Table(
    "ledger_transactions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.Uuid, nullable=True, index=True),
    sa.Column("correlation_id", sa.String(64), nullable=True),
    sa.Column("reverses_id", sa.Uuid, sa.ForeignKey("ledger_transactions.id"), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # One posting per payment step (e.g. one `p2p`, one `cash_in.capture`): a retried or
    # duplicated step cannot post twice.
    sa.Index(
        "uq_ledger_transactions_payment_step",
        "payment_id",
        "kind",
        unique=True,
        postgresql_where=sa.text("payment_id IS NOT NULL AND reverses_id IS NULL"),
        sqlite_where=sa.text("payment_id IS NOT NULL AND reverses_id IS NULL"),
    ),
    # A transaction is reversed at most once.
    sa.Index(
        "uq_ledger_transactions_reverses_id",
        "reverses_id",
        unique=True,
        postgresql_where=sa.text("reverses_id IS NOT NULL"),
        sqlite_where=sa.text("reverses_id IS NOT NULL"),
    ),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("transaction_id", sa.Uuid, sa.ForeignKey("ledger_transactions.id"), nullable=False, index=True),
    sa.Column("account_id", sa.Uuid, sa.ForeignKey("ledger_accounts.id"), nullable=False),
    sa.Column("direction", sa.String(6), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("payment_id", sa.Uuid, nullable=True, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # (account_id, sequence) is the account's history index and forbids a duplicated entry.
    sa.UniqueConstraint("account_id", "sequence"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("sequence > 0", name="sequence_positive"),
    sa.CheckConstraint("direction IN ('debit','credit')", name="direction_known"),
)

ledger_holds = sa.Table(
    "ledger_holds",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("account_id", sa.Uuid, sa.ForeignKey("ledger_accounts.id"), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("payment_id", sa.Uuid, nullable=True, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("status IN ('active','captured','released','expired')", name="status_known"),
    sa.Index("ix_ledger_holds_account_active", "account_id", "status"),
)
