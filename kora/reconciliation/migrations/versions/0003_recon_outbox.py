"""reconciliation outbox: the service's own event_outbox and its 16 partitions; each match
result's amount and currency

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

The reconciliation service announces its outcomes (a settlement confirmed, a mismatch
confirmed) as versioned, signed events, written in the transaction of the decision and
published by a relay, exactly as the core does (ADR 0018). The tables have the core's names
and columns because the relay reads the database it is given. When the reconciliation chain
shares a database with the core's (development), the core's chain already made them: they
are left alone here, both ways.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.platform.db import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _shares_the_core_database() -> bool:
    return "alembic_version" in sa.inspect(op.get_bind()).get_table_names()


def upgrade() -> None:
    op.add_column("recon_results", sa.Column("amount", sa.BigInteger(), nullable=True))
    op.add_column("recon_results", sa.Column("currency", sa.String(length=3), nullable=True))
    if _shares_the_core_database():
        return
    op.create_table(
        "event_outbox",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("published_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_event_outbox_event_id")),
    )
    op.create_index(
        "ix_event_outbox_unpublished",
        "event_outbox",
        ["partition", "seq"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "event_outbox_partitions",
        sa.Column("partition", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("partition", name=op.f("pk_event_outbox_partitions")),
    )
    partitions = sa.table("event_outbox_partitions", sa.column("partition", sa.SmallInteger()))
    op.bulk_insert(partitions, [{"partition": p} for p in range(16)])


def downgrade() -> None:
    with op.batch_alter_table("recon_results") as batch:
        batch.drop_column("currency")
        batch.drop_column("amount")
    if _shares_the_core_database():
        return
    # Unpublished outbox rows are decisions not yet announced: refuse to drop them.
    pending = op.get_bind().execute(sa.text("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")).scalar()
    if pending:
        raise RuntimeError(f"refusing to downgrade: {pending} outbox events are not published yet")
    op.drop_table("event_outbox_partitions")
    op.drop_index("ix_event_outbox_unpublished", table_name="event_outbox")
    op.drop_table("event_outbox")
