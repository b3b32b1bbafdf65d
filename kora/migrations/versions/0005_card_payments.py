"""card payments: authorization expiry, merchant reference, pending acquirer operation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

What a card payment needs on `payments`: when the acquirer's authorization lapses, the
merchant's order reference, and the operation asked of the acquirer whose answer is not known
yet (the card resolution job's work list).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import refuse_if_payments

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING_KNOWN = "pending_operation IS NULL OR pending_operation IN ('authorize','capture','void','refund')"


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authorization_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("merchant_reference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pending_operation", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(op.f("ck_payments_pending_operation_known"), PENDING_KNOWN)


# Card payments need all three columns (their expiry, the acquirer operation still unanswered,
# the merchant's order); below 0005 nothing knows a card payment, so none may be left behind.
DEPENDENT_ROWS = {
    "card payments": "type = 'card'",
    "payments waiting for an acquirer's answer (pending_operation)": "pending_operation IS NOT NULL",
    "payments with an authorization expiry": "authorization_expires_at IS NOT NULL",
    "non-merchant payments with a merchant reference": "merchant_reference IS NOT NULL AND type <> 'merchant'",
}


def downgrade() -> None:
    refuse_if_payments(revision, DEPENDENT_ROWS)
    # Before 0005 a merchant payment kept its order reference in provider_ref (it has no
    # provider): put it back there, where that code reads it.
    op.execute(
        "UPDATE payments SET provider_ref = merchant_reference "
        "WHERE type = 'merchant' AND merchant_reference IS NOT NULL AND provider_ref IS NULL"
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_pending_operation_known"), type_="check")
        batch_op.drop_column("pending_operation")
        batch_op.drop_column("merchant_reference")
        batch_op.drop_column("authorization_expires_at")
