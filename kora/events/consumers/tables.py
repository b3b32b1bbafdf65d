"""Tables of the event consumers (each consumer owns its tables; only it writes them).

- `notifications`: the customer-notification outbox. One row per message to send, addressed
  to a user id: no phone number is stored, the gateway resolves it at send time. Unique
  (event_id, user_id, template), so even a double delivery cannot queue a message twice.
- `kpi_daily_payments`, `kpi_daily_customers`: the KPI projection the leadership console
  reads, incremented once per event (the runtime's `processed_events` makes each event apply once).
- `recon_feed_payments`, `recon_feed_events`: what reconciliation reads of provider payments:
  the latest known state of each (by event `sequence`), and an append-only journal.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.platform.db import UtcDateTime, metadata

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("user_id", sa.Uuid, nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("template", sa.String(32), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.UniqueConstraint("event_id", "user_id", "template"),
    sa.CheckConstraint("channel IN ('sms','push')", name="channel_known"),
    sa.CheckConstraint("status IN ('pending','sent','failed')", name="status_known"),
    sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
)
# The dispatcher's work list: pending messages by due time.
sa.Index("ix_notifications_due", notifications.c.status, notifications.c.next_attempt_at)

kpi_daily_payments = sa.Table(
    "kpi_daily_payments",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("payment_type", sa.String(16), primary_key=True),
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("fees", sa.BigInteger, nullable=False),
)

kpi_daily_customers = sa.Table(
    "kpi_daily_customers",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("new_customers", sa.BigInteger, nullable=False),
)

recon_feed_payments = sa.Table(
    "recon_feed_payments",
    metadata,
    sa.Column("payment_id", sa.Uuid, primary_key=True),
    sa.Column("payment_type", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("provider_ref", sa.String(128), nullable=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("captured_amount", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("captured_at", UtcDateTime, nullable=True),
    sa.Column("settlement_due", UtcDateTime, nullable=True),
    sa.Column("settled_at", UtcDateTime, nullable=True),
    sa.Column("last_event_id", sa.Uuid, nullable=False),
    sa.Column("last_sequence", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
sa.Index("ix_recon_feed_payments_provider_status", recon_feed_payments.c.provider, recon_feed_payments.c.status)

recon_feed_events = sa.Table(
    "recon_feed_events",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("payment_id", sa.Uuid, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
)


def insert_for(conn: AsyncConnection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ON CONFLICT support on the connection's engine."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
