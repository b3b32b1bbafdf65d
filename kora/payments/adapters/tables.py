"""Payments tables: the payment (current status), its append-only status history, the
idempotency records, and the flags others raise on a payment (reconciliation's confirmed
mismatches)."""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("initiated_by", sa.Uuid, nullable=False),
    sa.Column("payer_wallet_id", sa.Uuid, nullable=True),
    sa.Column("payee_wallet_id", sa.Uuid, nullable=True),
    sa.Column("payer_user_id", sa.Uuid, nullable=True),
    sa.Column("payee_user_id", sa.Uuid, nullable=True),
    sa.Column("provider", sa.String(32), nullable=True),
    sa.Column("provider_ref", sa.String(128), nullable=True),
    sa.Column("correlation_id", sa.String(64), nullable=True, index=True),
    sa.Column("failure_code", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("parent_id", sa.Uuid, sa.ForeignKey("payments.id"), nullable=True, index=True),
    sa.Column("refunded_amount", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("captured_amount", sa.BigInteger, nullable=True),
    sa.Column("captured_at", UtcDateTime, nullable=True),
    sa.Column("settlement_due", UtcDateTime, nullable=True),
    sa.Column("authorization_expires_at", UtcDateTime, nullable=True),
    sa.Column("merchant_reference", sa.String(64), nullable=True),
    sa.Column("pending_operation", sa.String(16), nullable=True),
    sa.Column("provider_asked_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint(
        "status IN ('INITIATED','AUTHORIZED','CAPTURED','SETTLED','FAILED','REVERSED','CHARGED_BACK')",
        name="status_known",
    ),
    sa.CheckConstraint("fee >= 0 AND fee < amount", name="fee_within_amount"),
    sa.CheckConstraint(
        "captured_amount IS NULL OR (captured_amount > 0 AND captured_amount <= amount)", name="captured_within_amount"
    ),
    sa.CheckConstraint(
        "refunded_amount >= 0 AND refunded_amount <= COALESCE(captured_amount, amount)", name="refunds_within_capture"
    ),
    sa.CheckConstraint(
        "pending_operation IS NULL OR pending_operation IN ('authorize','capture','void','refund','risk_review')",
        name="pending_operation_known",
    ),
    # "My payments" pages: by party, newest first (ids are time-ordered uuid7).
    sa.Index("ix_payments_payer_user", "payer_user_id", "id"),
    sa.Index("ix_payments_payee_user", "payee_user_id", "id"),
    sa.Index("ix_payments_initiated_by", "initiated_by", "id"),
    # The sweeper's work list: unresolved provider payments, oldest first.
    sa.Index("ix_payments_status_updated", "status", "updated_at"),
    # The settlement step's work list: a provider's captured payments due by a date.
    sa.Index("ix_payments_provider_status_due", "provider", "status", "settlement_due"),
)

payment_status_history = sa.Table(
    "payment_status_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("payment_id", sa.Uuid, sa.ForeignKey("payments.id"), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(80), nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(80), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("payment_id", sa.Uuid, nullable=True, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.CheckConstraint("outcome IN ('in_flight','succeeded','failed')", name="outcome_known"),
)

# A payment someone outside the payments module found wrong (the reconciliation service confirmed
# a mismatch with the provider): shown to support and administrators, once per (payment, case).
payment_flags = sa.Table(
    "payment_flags",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("payment_id", sa.Uuid, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("case_id", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(24), nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("amount", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("flagged_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("payment_id", "case_id"),
    sa.CheckConstraint("amount IS NULL OR amount > 0", name="amount_positive"),
)
sa.Index("ix_payment_flags_payment", payment_flags.c.payment_id, payment_flags.c.flagged_at)
