"""The audit trail's table. Append-only: the triggers in `ddl.py` refuse UPDATE, DELETE and
TRUNCATE, so tampering needs the table owner to disable them first (and then shows up in
`verify_audit_chain`)."""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("chain", sa.Integer(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=True),
    sa.Column("details", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("chain", "position", name="uq_audit_log_chain_position"),
    sa.CheckConstraint("chain >= 0", name="chain_not_negative"),
    sa.CheckConstraint("position >= 1", name="position_positive"),
    sa.Index("ix_audit_log_correlation_id", "correlation_id"),
    sa.Index("ix_audit_log_subject", "subject"),
    sa.Index("ix_audit_log_occurred_at", "occurred_at"),
)
