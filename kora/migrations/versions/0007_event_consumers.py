"""event consumers: customer notification outbox, KPI projection, reconciliation feed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Kora's own consumers (kora/events/consumers): `notifications` queues SMS/push messages
addressed to user ids (no phone number: the gateway resolves it at send time);
`kpi_daily_payments` and `kpi_daily_customers` are the leadership console's counters;
`recon_feed_payments` and `recon_feed_events` are what reconciliation reads of provider payments.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import DowngradeRefused

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("template", sa.String(length=32), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.CheckConstraint("channel IN ('sms','push')", name=op.f("ck_notifications_channel_known")),
        sa.CheckConstraint("status IN ('pending','sent','failed')", name=op.f("ck_notifications_status_known")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notifications_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("event_id", "user_id", "template", name=op.f("uq_notifications_event_id_user_id_template")),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_at"], unique=False)
    op.create_table(
        "kpi_daily_payments",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("payment_type", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fees", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "payment_type", "provider", "currency", "status", name=op.f("pk_kpi_daily_payments")
        ),
    )
    op.create_table(
        "kpi_daily_customers",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_customers", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_kpi_daily_customers")),
    )
    op.create_table(
        "recon_feed_payments",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("payment_type", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settlement_due", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Uuid(), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_recon_feed_payments")),
    )
    op.create_index(
        "ix_recon_feed_payments_provider_status", "recon_feed_payments", ["provider", "status"], unique=False
    )
    op.create_table(
        "recon_feed_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_recon_feed_events")),
    )
    op.create_index(op.f("ix_recon_feed_events_payment_id"), "recon_feed_events", ["payment_id"], unique=False)


def downgrade() -> None:
    # Pending notifications are messages customers are owed: refuse to drop them.
    bind = op.get_bind()
    pending = bind.execute(sa.text("SELECT count(*) FROM notifications WHERE status = 'pending'")).scalar()
    if pending:
        raise DowngradeRefused(f"refusing to downgrade 0007: {pending} notifications are still pending")
    op.drop_index(op.f("ix_recon_feed_events_payment_id"), table_name="recon_feed_events")
    op.drop_table("recon_feed_events")
    op.drop_index("ix_recon_feed_payments_provider_status", table_name="recon_feed_payments")
    op.drop_table("recon_feed_payments")
    op.drop_table("kpi_daily_customers")
    op.drop_table("kpi_daily_payments")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
