"""The risk module's tables, in the core's database (migration 0010). Ids only, no PII: payer,
payee, device and payment ids are the opaque ids the payment path passes in.

- `risk_payments`: every payment risk has assessed, with its decision and the status of its
  reservation. Only `reserved`, `held` and `committed` rows count in the windows.
- `risk_devices`: when a payer was first seen on a device.
- `risk_reviews`: risk analysts' decisions on held payments (migration 0013).
- `risk_payer_hours`: the payer's counted payments by hour of day (UTC), count and amount,
  kept up to date on reserve and release so the unusual-hours flag does not scan the history.
"""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

COUNTED = ("reserved", "held", "committed")
STATUSES = (*COUNTED, "released", "denied")
_TYPES = "type IN ('p2p','cash_in','cash_out','merchant','card')"

risk_payments = sa.Table(
    "risk_payments",
    metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("payer_id", sa.String(64), nullable=False),
    sa.Column("payee_id", sa.String(64), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(8), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint(_TYPES, name="type_known"),
    sa.CheckConstraint(
        "status IN ('reserved','held','committed','released','denied')",
        name="status_known",
    ),
    sa.CheckConstraint("outcome IN ('allow','review','deny')", name="outcome_known"),
    # The payer's windows (amount and count, structuring, fan-out, layering): a range on `at`.
    sa.Index("ix_risk_payments_payer_at", "payer_id", "at"),
    # payer -> payee windows and "paid this payee before".
    sa.Index("ix_risk_payments_payer_payee_at", "payer_id", "payee_id", "at"),
    # The payee's senders (fan-in).
    sa.Index("ix_risk_payments_payee_at", "payee_id", "at"),
    # The review queue: held payments, oldest first.
    sa.Index("ix_risk_payments_status_at", "status", "at"),
)

# A risk analyst's decision on a held payment, with what it was about (the policy version, the
# rules that fired, the score) so each rule's false-positive rate can be measured.
risk_reviews = sa.Table(
    "risk_reviews",
    metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("analyst", sa.String(64), nullable=False),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=False),
    sa.Column("payment_type", sa.String(16), nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("rules", sa.JSON, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("held_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("decision IN ('approve','reject')", name="decision_known"),
    sa.Index("ix_risk_reviews_decided_at", "decided_at"),
)

risk_devices = sa.Table(
    "risk_devices",
    metadata,
    sa.Column("payer_id", sa.String(64), primary_key=True),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
)

risk_payer_hours = sa.Table(
    "risk_payer_hours",
    metadata,
    sa.Column("payer_id", sa.String(64), primary_key=True),
    sa.Column("hour", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.CheckConstraint("hour >= 0 AND hour < 24", name="hour_of_day"),
    sa.CheckConstraint("count >= 0 AND amount >= 0", name="not_negative"),
)
