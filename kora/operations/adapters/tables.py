"""The operations module's table, in the core's database (migration 0012): one row per switch
that is on. Clearing a switch deletes its row; the history is the audit trail's
(`ops.operation.paused|resumed`, `ops.provider.disabled|enabled`)."""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

OPERATIONS = ("cash-in", "cash-out", "p2p", "merchant-payment")

operational_controls = sa.Table(
    "operational_controls",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("target", sa.String(32), primary_key=True),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("incident", sa.String(64), nullable=True),
    sa.Column("retry_after_seconds", sa.Integer, nullable=False),
    sa.Column("set_by", sa.String(200), nullable=False),
    sa.Column("set_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('operation', 'provider')", name="kind_known"),
    sa.CheckConstraint(
        "kind <> 'operation' OR target IN ('cash-in', 'cash-out', 'p2p', 'merchant-payment')",
        name="operation_known",
    ),
    sa.CheckConstraint("retry_after_seconds BETWEEN 1 AND 86400", name="retry_after_range"),
)
