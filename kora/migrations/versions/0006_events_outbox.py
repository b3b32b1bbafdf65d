"""events: transactional outbox, embedded stream, consumer cursors, processed events, dead letters

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

The outbox is written in the transaction of the state change it announces (ADR 0018); the
relay locks outbox partitions (16 rows) with SKIP LOCKED to share the work; the embedded bus
keeps its stream in `event_stream`; consumers record the events they applied in
`processed_events` in the transaction of the effect, and park what they cannot apply in
`dead_letters`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
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
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
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
    op.create_table(
        "event_stream",
        sa.Column("seq", _SEQ, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_stream")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_event_stream_msg_id")),
    )
    op.create_index(op.f("ix_event_stream_stored_at"), "event_stream", ["stored_at"], unique=False)
    op.create_table(
        "event_consumer_cursors",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("acked_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_event_consumer_cursors")),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("stream_seq", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("status IN ('open','retried','dropped')", name=op.f("ck_dead_letters_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_open", "dead_letters", ["consumer", "failed_at"], unique=False)


def downgrade() -> None:
    # Unpublished outbox rows are facts not yet announced: refuse to drop them (guards.py style).
    bind = op.get_bind()
    pending = bind.execute(sa.text("SELECT count(*) FROM event_outbox WHERE published_at IS NULL")).scalar()
    if pending:
        raise RuntimeError(f"refusing to downgrade: {pending} outbox events are not published yet")
    op.drop_index("ix_dead_letters_open", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("processed_events")
    op.drop_table("event_consumer_cursors")
    op.drop_index(op.f("ix_event_stream_stored_at"), table_name="event_stream")
    op.drop_table("event_stream")
    op.drop_table("event_outbox_partitions")
    op.drop_index("ix_event_outbox_unpublished", table_name="event_outbox")
    op.drop_table("event_outbox")
