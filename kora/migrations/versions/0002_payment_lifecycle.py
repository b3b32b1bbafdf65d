"""payment lifecycle: fees, refunds, partial captures, J+1 settlement, chargebacks, merchants

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Columns the full lifecycle needs on `payments` (all with database checks: a fee below the
amount, a capture within the authorization, refunds within the capture), the CHARGED_BACK
status, the settlement step's index, and the `merchant` role.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import refuse_if_payments

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('INITIATED','AUTHORIZED','CAPTURED','SETTLED','FAILED','REVERSED')"
NEW_STATUSES = "status IN ('INITIATED','AUTHORIZED','CAPTURED','SETTLED','FAILED','REVERSED','CHARGED_BACK')"
OLD_ROLES = "role IN ('customer', 'support', 'admin')"
NEW_ROLES = "role IN ('customer', 'support', 'admin', 'merchant')"


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("refunded_amount", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("captured_amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("settlement_due", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(op.f("fk_payments_parent_id_payments"), "payments", ["parent_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_payments_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index("ix_payments_provider_status_due", ["provider", "status", "settlement_due"], unique=False)
        batch_op.drop_constraint(op.f("ck_payments_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payments_status_known"), NEW_STATUSES)
        batch_op.create_check_constraint(op.f("ck_payments_fee_within_amount"), "fee >= 0 AND fee < amount")
        batch_op.create_check_constraint(
            op.f("ck_payments_captured_within_amount"),
            "captured_amount IS NULL OR (captured_amount > 0 AND captured_amount <= amount)",
        )
        batch_op.create_check_constraint(
            op.f("ck_payments_refunds_within_capture"),
            "refunded_amount >= 0 AND refunded_amount <= COALESCE(captured_amount, amount)",
        )
    with op.batch_alter_table("user_roles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_roles_role_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_user_roles_role_known"), NEW_ROLES)


# What the columns this revision added hold that nothing else does: a downgrade with such rows
# would lose money facts (a re-upgrade would reset refunded_amount to 0 and allow a refund twice).
MONEY_FACTS = {
    "merchant, refund or card payments": "type IN ('merchant', 'refund', 'card')",
    "payments with refunds (refunded_amount)": "refunded_amount <> 0",
    "payments with a fee": "fee > 0",
    "charged-back payments": "status = 'CHARGED_BACK'",
}


def downgrade() -> None:
    refuse_if_payments(revision, MONEY_FACTS)
    op.execute("DELETE FROM user_roles WHERE role = 'merchant'")
    with op.batch_alter_table("user_roles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_roles_role_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_user_roles_role_known"), OLD_ROLES)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_refunds_within_capture"), type_="check")
        batch_op.drop_constraint(op.f("ck_payments_captured_within_amount"), type_="check")
        batch_op.drop_constraint(op.f("ck_payments_fee_within_amount"), type_="check")
        batch_op.drop_constraint(op.f("ck_payments_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payments_status_known"), OLD_STATUSES)
        batch_op.drop_index("ix_payments_provider_status_due")
        batch_op.drop_index(batch_op.f("ix_payments_parent_id"))
        batch_op.drop_constraint(op.f("fk_payments_parent_id_payments"), type_="foreignkey")
        batch_op.drop_column("settlement_due")
        batch_op.drop_column("captured_at")
        batch_op.drop_column("captured_amount")
        batch_op.drop_column("refunded_amount")
        batch_op.drop_column("parent_id")
        batch_op.drop_column("fee")
