"""webhook receipts: each provider event applied once across processes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

One row per (provider, event id) a signed provider webhook delivered: the signature of its
first delivery (a byte-identical copy later is a replay), the payment it was about, what it
did, and when it arrived (receipts older than the retention are purged).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_receipts",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_webhook_receipts")),
    )
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_receipts_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_receipts_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_receipts_received_at"))
        batch_op.drop_index(batch_op.f("ix_webhook_receipts_payment_id"))
    op.drop_table("webhook_receipts")
