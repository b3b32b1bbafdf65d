"""payment flags: the mismatches reconciliation confirmed, shown to support and administrators

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

The core's `settlement` consumer applies the reconciliation service's
`reconciliation.mismatch_confirmed` events: one row per (payment, case), written in the
transaction that records the event as processed (ADR 0024).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import DowngradeRefused

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payment_flags",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount IS NULL OR amount > 0", name=op.f("ck_payment_flags_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_flags")),
        sa.UniqueConstraint("payment_id", "case_id", name=op.f("uq_payment_flags_payment_id_case_id")),
    )
    op.create_index("ix_payment_flags_payment", "payment_flags", ["payment_id", "flagged_at"], unique=False)


def downgrade() -> None:
    # A flag is a confirmed discrepancy support must see: refuse to drop any.
    flagged = op.get_bind().execute(sa.text("SELECT count(*) FROM payment_flags")).scalar()
    if flagged:
        raise DowngradeRefused(f"refusing to downgrade 0008: {flagged} payments are flagged by reconciliation")
    op.drop_index("ix_payment_flags_payment", table_name="payment_flags")
    op.drop_table("payment_flags")
