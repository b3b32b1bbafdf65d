"""risk activity: the payments risk has assessed, payers' devices and hours (issue #6)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

The SQL store behind the risk engine's velocity windows (`SqlRiskActivity`): one row per
assessed payment with its decision and reservation status, the first time each payer was seen
on a device, and the payer's counted payments by hour of day. Ids only, no PII.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import DowngradeRefused

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_payments",
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("payee_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_risk_payments_amount_positive")),
        sa.CheckConstraint(
            "type IN ('p2p','cash_in','cash_out','merchant','card')", name=op.f("ck_risk_payments_type_known")
        ),
        sa.CheckConstraint(
            "status IN ('reserved','held','committed','released','denied')",
            name=op.f("ck_risk_payments_status_known"),
        ),
        sa.CheckConstraint("outcome IN ('allow','review','deny')", name=op.f("ck_risk_payments_outcome_known")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_risk_payments")),
    )
    op.create_index("ix_risk_payments_payer_at", "risk_payments", ["payer_id", "at"], unique=False)
    op.create_index("ix_risk_payments_payer_payee_at", "risk_payments", ["payer_id", "payee_id", "at"], unique=False)
    op.create_index("ix_risk_payments_payee_at", "risk_payments", ["payee_id", "at"], unique=False)
    op.create_table(
        "risk_devices",
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payer_id", "device_id", name=op.f("pk_risk_devices")),
    )
    op.create_table(
        "risk_payer_hours",
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("hour >= 0 AND hour < 24", name=op.f("ck_risk_payer_hours_hour_of_day")),
        sa.CheckConstraint("count >= 0 AND amount >= 0", name=op.f("ck_risk_payer_hours_not_negative")),
        sa.PrimaryKeyConstraint("payer_id", "hour", name=op.f("pk_risk_payer_hours")),
    )


def downgrade() -> None:
    # Open reservations are money some payment still counts against a limit: refuse to drop them.
    open_ = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM risk_payments WHERE status IN ('reserved', 'held')"))
        .scalar()
    )
    if open_:
        raise DowngradeRefused(f"refusing to downgrade 0010: {open_} risk reservations are still open")
    op.drop_table("risk_payer_hours")
    op.drop_table("risk_devices")
    op.drop_index("ix_risk_payments_payee_at", table_name="risk_payments")
    op.drop_index("ix_risk_payments_payer_payee_at", table_name="risk_payments")
    op.drop_index("ix_risk_payments_payer_at", table_name="risk_payments")
    op.drop_table("risk_payments")
