"""The reconciliation service's own schema, on its own metadata: it lives in its own database
and never shares the core's tables or the core's migration chain."""

from __future__ import annotations

import sqlalchemy as sa

import kora.events.adapters.tables as _pipeline
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

# Kora's side of the reconciliation: the latest state of each provider payment, folded from the
# core's `payment.status_changed` events (the service never reads the core's database).
recon_payments = sa.Table(
    "recon_payments",
    recon_metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False, index=True),
    sa.Column("provider_ref", sa.String(128), nullable=True),
    sa.Column("our_reference", sa.String(128), nullable=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # Money in integer minor units.
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("captured_amount", sa.BigInteger, nullable=True),
    sa.Column("captured_at", UtcDateTime, nullable=True),
    sa.Column("settlement_due", UtcDateTime, nullable=True),
    # How many status changes the payment had when the stored event was emitted: an older
    # event (redelivered, replayed, out of order) never overwrites a newer one.
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("sequence > 0", name="sequence_positive"),
)

# The outcome of the latest match run of each report: one row per result (a line, or a
# payment the report does not list). A new run of the same report replaces them.
_ResultId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
recon_results = sa.Table(
    "recon_results",
    recon_metadata,
    sa.Column("id", _ResultId, primary_key=True, autoincrement=True),
    sa.Column("report_id", sa.Uuid, sa.ForeignKey("recon_reports.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("line_number", sa.Integer, nullable=True),
    sa.Column("payment_id", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(24), nullable=False),
    sa.Column("reason", sa.String(16), nullable=True),
    sa.Column("auto_resolution", sa.String(16), nullable=False),
    sa.Column("detail", sa.String(300), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # What the result is about, in minor units: the provider's line, else Kora's payment.
    sa.Column("amount", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.CheckConstraint("line_number IS NOT NULL OR payment_id IS NOT NULL", name="names_something"),
)

# The events pipeline's own tables (kora/events/adapters/tables.py), copied onto this metadata:
# the consumer runtime records applied events and parks dead letters, and the relay publishes
# the service's outcomes (ADR 0018), in the database they are given — here the reconciliation
# database. One definition, so the two can never drift apart.
processed_events = _pipeline.processed_events.to_metadata(recon_metadata)
dead_letters = _pipeline.dead_letters.to_metadata(recon_metadata)
event_outbox = _pipeline.event_outbox.to_metadata(recon_metadata)
event_outbox_partitions = _pipeline.event_outbox_partitions.to_metadata(recon_metadata)

# --- The review queue (issue #5): cases, their comments and the audit trail's hash chain. ----
_CASE_STATUSES = "'awaiting_core','open','investigating','proposed','approved','rejected','resolved','closed'"
_PROPOSAL_KINDS = "'confirm_mismatch','write_off','manual_credit','manual_debit','accept_provider','no_action'"

# One case per (report, line) or (report, unlisted payment): a re-run of the report updates it.
# `evidence` is JSON of the line's and Kora's fields as stored (ids, amounts, statuses; no PII).
recon_cases = sa.Table(
    "recon_cases",
    recon_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("report_id", sa.Uuid, sa.ForeignKey("recon_reports.id"), nullable=False),
    sa.Column("subject", sa.String(80), nullable=False),  # line:<n> or payment:<id>
    sa.Column("line_number", sa.Integer, nullable=True),
    sa.Column("payment_id", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(24), nullable=False),
    sa.Column("reason", sa.String(16), nullable=True),
    sa.Column("auto_resolution", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("last_run_at", UtcDateTime, nullable=False),
    # The automatic rule (a late success): the core asked about the payment.
    sa.Column("query_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_query_at", UtcDateTime, nullable=True),
    sa.Column("core_status", sa.String(16), nullable=True),
    # The current proposal and its decision (maker-checker).
    sa.Column("proposal_kind", sa.String(24), nullable=True),
    sa.Column("proposal_amount", sa.BigInteger, nullable=True),
    sa.Column("proposal_currency", sa.String(3), nullable=True),
    sa.Column("proposal_note", sa.String(1000), nullable=True),
    # The payment the proposal was made for: an approval posts to it and no other (0005).
    sa.Column("proposal_payment_id", sa.String(64), nullable=True),
    sa.Column("proposed_by", sa.String(128), nullable=True),
    sa.Column("proposed_at", UtcDateTime, nullable=True),
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    # A money-moving correction: posted through the core (idempotent by case id), or retried.
    sa.Column("posting_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("posting_error", sa.String(200), nullable=True),
    sa.Column("last_posting_at", UtcDateTime, nullable=True),  # retries go by their last attempt (0005)
    sa.Column("posted_transaction_id", sa.String(64), nullable=True),
    sa.Column("posted_at", UtcDateTime, nullable=True),
    sa.Column("close_reason", sa.String(200), nullable=True),
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("report_id", "subject"),
    sa.CheckConstraint(f"status IN ({_CASE_STATUSES})", name="status_known"),
    sa.CheckConstraint(f"proposal_kind IS NULL OR proposal_kind IN ({_PROPOSAL_KINDS})", name="proposal_known"),
    sa.CheckConstraint("proposal_amount IS NULL OR proposal_amount > 0", name="proposal_amount_positive"),
    sa.CheckConstraint("decided_by IS NULL OR proposed_by IS NULL OR decided_by <> proposed_by", name="maker_checker"),
    sa.CheckConstraint("line_number IS NOT NULL OR payment_id IS NOT NULL", name="names_something"),
)
sa.Index("ix_recon_cases_queue", recon_cases.c.status, recon_cases.c.provider, recon_cases.c.opened_at)

_CommentId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
recon_case_comments = sa.Table(
    "recon_case_comments",
    recon_metadata,
    sa.Column("id", _CommentId, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Uuid, sa.ForeignKey("recon_cases.id"), nullable=False, index=True),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("body", sa.String(1000), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Every action on a case, appended in one keyed hash chain (domain/audit_chain.py); the head row
# is updated first by each append, which serializes appenders and catches a truncated tail.
recon_audit = sa.Table(
    "recon_audit",
    recon_metadata,
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("case_id", sa.String(36), nullable=False, index=True),
    sa.Column("status_before", sa.String(16), nullable=True),
    sa.Column("status_after", sa.String(16), nullable=True),
    sa.Column("correlation_id", sa.String(64), nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("position > 0", name="position_positive"),
)
recon_audit_head = sa.Table(
    "recon_audit_head",
    recon_metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
