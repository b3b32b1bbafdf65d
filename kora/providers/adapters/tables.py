"""Providers tables: the receipts of provider webhooks (one per provider event), shared by
every Kora process so an event is applied once wherever it lands."""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

webhook_receipts = sa.Table(
    "webhook_receipts",
    metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(128), primary_key=True),
    # The v1 signature of the first delivery: a byte-identical copy later is a replay.
    sa.Column("signature", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.Uuid, nullable=True, index=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    # The purge's work list.
    sa.Column("received_at", UtcDateTime, nullable=False, index=True),
)
