"""Events tables.

- `event_outbox`: events written in the same transaction as the state change they announce;
  the relay publishes them and stamps `published_at` (rows are kept for a retention period).
- `event_outbox_partitions`: one row per outbox partition; a relay locks the partitions it
  publishes (FOR UPDATE SKIP LOCKED), so several relays share the work and the events of one
  aggregate (one partition) leave in order.
- `event_stream`: the embedded bus's stream (what JetStream keeps when the bus is NATS): one row
  per published message, `msg_id` unique so a duplicate publish is dropped, as JetStream does.
- `event_consumer_cursors`: where each durable consumer of the embedded stream stands.
- `processed_events`: the events each consumer has applied, written in the transaction of the
  effect, so a redelivered event changes nothing.
- `dead_letters`: events a consumer could not apply (or refused as forged), with the reason,
  for people to inspect and re-drive or drop.
"""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("partition", sa.SmallInteger, nullable=False),
    sa.Column("aggregate_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("version", sa.SmallInteger, nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
    # The message headers (event id, type, version, correlation id, trace context), written with
    # the row so the relay does not parse each envelope.
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("published_at", UtcDateTime, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(200), nullable=True),
)
# The relay's work list: unpublished rows of a partition in write order (partial on both engines).
sa.Index(
    "ix_event_outbox_unpublished",
    event_outbox.c.partition,
    event_outbox.c.seq,
    postgresql_where=event_outbox.c.published_at.is_(None),
    sqlite_where=event_outbox.c.published_at.is_(None),
)

event_outbox_partitions = sa.Table(
    "event_outbox_partitions",
    metadata,
    sa.Column("partition", sa.SmallInteger, primary_key=True, autoincrement=False),
)

event_stream = sa.Table(
    "event_stream",
    metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("stored_at", UtcDateTime, nullable=False, index=True),
)

event_consumer_cursors = sa.Table(
    "event_consumer_cursors",
    metadata,
    sa.Column("consumer", sa.String(64), primary_key=True),
    sa.Column("acked_seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("consumer", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("processed_at", UtcDateTime, nullable=False),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
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
    sa.CheckConstraint("status IN ('open','retried','dropped')", name="status_known"),
)
sa.Index("ix_dead_letters_open", dead_letters.c.consumer, dead_letters.c.failed_at)


@sa.event.listens_for(event_outbox_partitions, "after_create")
def _fill_partitions(target: sa.Table, connection: sa.Connection, **_: object) -> None:
    """Tables created from metadata (tests) get their partition rows, as the migration does."""
    from kora.events.domain import OUTBOX_PARTITIONS

    connection.execute(target.insert(), [{"partition": p} for p in range(OUTBOX_PARTITIONS)])
