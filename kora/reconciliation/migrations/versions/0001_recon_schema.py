"""reconciliation schema: stored reports, their lines and quarantined lines

Revision ID: 0001
Revises:
Create Date: 2026-12-01

The reconciliation service's own database. A report is stored once per (provider, digest);
its content and its quarantined raw lines are encrypted by the service (AES-GCM).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.platform.db import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recon_reports",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("report_day", sa.Date, nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("imported_at", UtcDateTime, nullable=False),
        sa.Column("imported_by", sa.String(128), nullable=False),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("quarantined_count", sa.Integer, nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_recon_reports_size_not_negative")),
        sa.CheckConstraint(
            "line_count >= 0 AND quarantined_count >= 0", name=op.f("ck_recon_reports_counts_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_reports")),
        sa.UniqueConstraint("provider", "digest", name=op.f("uq_recon_reports_provider_digest")),
    )
    op.create_table(
        "recon_report_lines",
        sa.Column("report_id", sa.Uuid, nullable=False),
        sa.Column("line_number", sa.Integer, nullable=False),
        sa.Column("provider_txn_id", sa.String(128), nullable=False),
        sa.Column("our_reference", sa.String(128), nullable=True),
        sa.Column("provider_parent_id", sa.String(128), nullable=True),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(3), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=True),
        sa.Column("net", sa.BigInteger, nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_recon_report_lines_amount_positive")),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["recon_reports.id"],
            name=op.f("fk_recon_report_lines_report_id_recon_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "line_number", name=op.f("pk_recon_report_lines")),
    )
    op.create_index(
        op.f("ix_recon_report_lines_provider_txn_id"), "recon_report_lines", ["provider_txn_id"], unique=False
    )
    op.create_index(op.f("ix_recon_report_lines_our_reference"), "recon_report_lines", ["our_reference"], unique=False)
    op.create_table(
        "recon_quarantine",
        sa.Column("report_id", sa.Uuid, nullable=False),
        sa.Column("line_number", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["recon_reports.id"],
            name=op.f("fk_recon_quarantine_report_id_recon_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "line_number", name=op.f("pk_recon_quarantine")),
    )


def downgrade() -> None:
    op.drop_table("recon_quarantine")
    op.drop_index(op.f("ix_recon_report_lines_our_reference"), table_name="recon_report_lines")
    op.drop_index(op.f("ix_recon_report_lines_provider_txn_id"), table_name="recon_report_lines")
    op.drop_table("recon_report_lines")
    op.drop_table("recon_reports")
