"""risk reviews: payments held for a risk analyst, and the analysts' decisions (issue #6)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26

A payment the risk policy sends to review waits with `pending_operation = 'risk_review'` (its
funds held, no provider asked; `provider_asked_at` says when an approved cash-in/out was sent,
so the sweeper's give-up age starts there); `risk_reviews` keeps each analyst's decision with the policy
version and rules it was about, so how often a rule's reviews are approved (its false-positive
rate) can be measured. The review queue reads `risk_payments` by status and time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import refuse_if_payments

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD_PENDING = "pending_operation IS NULL OR pending_operation IN ('authorize','capture','void','refund')"
NEW_PENDING = "pending_operation IS NULL OR pending_operation IN ('authorize','capture','void','refund','risk_review')"


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_pending_operation_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payments_pending_operation_known"), NEW_PENDING)
        batch_op.add_column(sa.Column("provider_asked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "risk_reviews",
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("analyst", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payment_type", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("decision IN ('approve','reject')", name=op.f("ck_risk_reviews_decision_known")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_risk_reviews")),
    )
    op.create_index("ix_risk_reviews_decided_at", "risk_reviews", ["decided_at"], unique=False)
    op.create_index("ix_risk_payments_status_at", "risk_payments", ["status", "at"], unique=False)


def downgrade() -> None:
    # A payment waiting for an analyst would be left with a pending operation nothing handles.
    refuse_if_payments(revision, {"payments held for a risk review": "pending_operation = 'risk_review'"})
    op.drop_index("ix_risk_payments_status_at", table_name="risk_payments")
    op.drop_index("ix_risk_reviews_decided_at", table_name="risk_reviews")
    op.drop_table("risk_reviews")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("provider_asked_at")
        batch_op.drop_constraint(op.f("ck_payments_pending_operation_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payments_pending_operation_known"), OLD_PENDING)
