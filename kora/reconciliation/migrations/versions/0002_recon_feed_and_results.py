"""reconciliation feed and match results: recon_payments, recon_results, and the consumer
runtime's processed_events and dead_letters

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

`recon_payments` is Kora's side of a reconciliation, folded from the core's
`payment.status_changed` events; `recon_results` holds the latest match run of each report.
`processed_events` and `dead_letters` have the core's names and columns because the consumer
runtime writes them in the database it is given. When the reconciliation chain shares a
database with the core's (development), the core's chain already made them: they are left
alone here, both ways.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.platform.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ResultId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _shares_the_core_database() -> bool:
    return "alembic_version" in sa.inspect(op.get_bind()).get_table_names()


def upgrade() -> None:
    op.create_table(
        "recon_payments",
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("provider_ref", sa.String(128), nullable=True),
        sa.Column("our_reference", sa.String(128), nullable=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("captured_amount", sa.BigInteger, nullable=True),
        sa.Column("captured_at", UtcDateTime, nullable=True),
        sa.Column("settlement_due", UtcDateTime, nullable=True),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_recon_payments_amount_positive")),
        sa.CheckConstraint("sequence > 0", name=op.f("ck_recon_payments_sequence_positive")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_recon_payments")),
    )
    op.create_index(op.f("ix_recon_payments_provider"), "recon_payments", ["provider"], unique=False)
    op.create_table(
        "recon_results",
        sa.Column("id", _ResultId, autoincrement=True, nullable=False),
        sa.Column("report_id", sa.Uuid, nullable=False),
        sa.Column("line_number", sa.Integer, nullable=True),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("reason", sa.String(16), nullable=True),
        sa.Column("auto_resolution", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint(
            "line_number IS NOT NULL OR payment_id IS NOT NULL", name=op.f("ck_recon_results_names_something")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["recon_reports.id"],
            name=op.f("fk_recon_results_report_id_recon_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_results")),
    )
    op.create_index(op.f("ix_recon_results_report_id"), "recon_results", ["report_id"], unique=False)
    if _shares_the_core_database():
        return
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("processed_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("stream_seq", sa.BigInteger, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failed_at", UtcDateTime, nullable=False),
        sa.Column("resolved_at", UtcDateTime, nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.CheckConstraint("status IN ('open','retried','dropped')", name=op.f("ck_dead_letters_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_open", "dead_letters", ["consumer", "failed_at"], unique=False)


def downgrade() -> None:
    if not _shares_the_core_database():
        op.drop_index("ix_dead_letters_open", table_name="dead_letters")
        op.drop_table("dead_letters")
        op.drop_table("processed_events")
    op.drop_index(op.f("ix_recon_results_report_id"), table_name="recon_results")
    op.drop_table("recon_results")
    op.drop_index(op.f("ix_recon_payments_provider"), table_name="recon_payments")
    op.drop_table("recon_payments")
