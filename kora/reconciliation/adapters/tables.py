"""The reconciliation service's own schema, on its own metadata: it lives in its own database
and never shares the core's tables or the core's migration chain."""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import NAMING_CONVENTION, UtcDateTime

recon_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

recon_reports = sa.Table(
    "recon_reports",
    recon_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("report_day", sa.Date, nullable=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    # nonce || AES-GCM ciphertext of the file's bytes: a provider file can carry phone numbers.
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("imported_at", UtcDateTime, nullable=False),
    sa.Column("imported_by", sa.String(128), nullable=False),
    sa.Column("line_count", sa.Integer, nullable=False),
    sa.Column("quarantined_count", sa.Integer, nullable=False),
    sa.UniqueConstraint("provider", "digest"),
    sa.CheckConstraint("size >= 0", name="size_not_negative"),
    sa.CheckConstraint("line_count >= 0 AND quarantined_count >= 0", name="counts_not_negative"),
)

recon_report_lines = sa.Table(
    "recon_report_lines",
    recon_metadata,
    sa.Column("report_id", sa.Uuid, sa.ForeignKey("recon_reports.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("line_number", sa.Integer, primary_key=True),
    sa.Column("provider_txn_id", sa.String(128), nullable=False, index=True),
    sa.Column("our_reference", sa.String(128), nullable=True, index=True),
    sa.Column("provider_parent_id", sa.String(128), nullable=True),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("direction", sa.String(3), nullable=True),
    # Money in integer minor units: amount is a magnitude, fee and net are signed as reported.
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=True),
    sa.Column("net", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
)

recon_quarantine = sa.Table(
    "recon_quarantine",
    recon_metadata,
    sa.Column("report_id", sa.Uuid, sa.ForeignKey("recon_reports.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("line_number", sa.Integer, primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    # nonce || AES-GCM ciphertext of the raw line, under the report's key_id.
    sa.Column("raw", sa.LargeBinary, nullable=False),
)
