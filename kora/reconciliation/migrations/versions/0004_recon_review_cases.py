"""reconciliation review queue: cases, their comments and the audit trail's hash chain

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Every match result that is neither MATCHED nor PENDING becomes a case (one per report line, or
per payment a report does not list); reviewers propose, approvers decide (maker-checker), and
every action is appended to `recon_audit`, a keyed hash chain whose head is `recon_audit_head`
(ADR 0025).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.platform.db import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CommentId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STATUSES = "'awaiting_core','open','investigating','proposed','approved','rejected','resolved','closed'"
_KINDS = "'confirm_mismatch','write_off','manual_credit','manual_debit','accept_provider','no_action'"


def upgrade() -> None:
    op.create_table(
        "recon_cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=True),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("reason", sa.String(16), nullable=True),
        sa.Column("auto_resolution", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("last_run_at", UtcDateTime, nullable=False),
        sa.Column("query_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_query_at", UtcDateTime, nullable=True),
        sa.Column("core_status", sa.String(16), nullable=True),
        sa.Column("proposal_kind", sa.String(24), nullable=True),
        sa.Column("proposal_amount", sa.BigInteger(), nullable=True),
        sa.Column("proposal_currency", sa.String(3), nullable=True),
        sa.Column("proposal_note", sa.String(1000), nullable=True),
        sa.Column("proposed_by", sa.String(128), nullable=True),
        sa.Column("proposed_at", UtcDateTime, nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decided_at", UtcDateTime, nullable=True),
        sa.Column("posting_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("posting_error", sa.String(200), nullable=True),
        sa.Column("posted_transaction_id", sa.String(64), nullable=True),
        sa.Column("posted_at", UtcDateTime, nullable=True),
        sa.Column("close_reason", sa.String(200), nullable=True),
        sa.Column("closed_at", UtcDateTime, nullable=True),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_recon_cases_status_known")),
        sa.CheckConstraint(
            f"proposal_kind IS NULL OR proposal_kind IN ({_KINDS})", name=op.f("ck_recon_cases_proposal_known")
        ),
        sa.CheckConstraint(
            "proposal_amount IS NULL OR proposal_amount > 0", name=op.f("ck_recon_cases_proposal_amount_positive")
        ),
        sa.CheckConstraint(
            "decided_by IS NULL OR proposed_by IS NULL OR decided_by <> proposed_by",
            name=op.f("ck_recon_cases_maker_checker"),
        ),
        sa.CheckConstraint(
            "line_number IS NOT NULL OR payment_id IS NOT NULL", name=op.f("ck_recon_cases_names_something")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"], ["recon_reports.id"], name=op.f("fk_recon_cases_report_id_recon_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_cases")),
        sa.UniqueConstraint("report_id", "subject", name=op.f("uq_recon_cases_report_id_subject")),
    )
    op.create_index("ix_recon_cases_queue", "recon_cases", ["status", "provider", "opened_at"], unique=False)
    op.create_table(
        "recon_case_comments",
        sa.Column("id", _CommentId, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("body", sa.String(1000), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["recon_cases.id"], name=op.f("fk_recon_case_comments_case_id_recon_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_case_comments")),
    )
    op.create_index(op.f("ix_recon_case_comments_case_id"), "recon_case_comments", ["case_id"], unique=False)
    op.create_table(
        "recon_audit",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("status_before", sa.String(16), nullable=True),
        sa.Column("status_after", sa.String(16), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("position > 0", name=op.f("ck_recon_audit_position_positive")),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_recon_audit")),
    )
    op.create_index(op.f("ix_recon_audit_case_id"), "recon_audit", ["case_id"], unique=False)
    op.create_table(
        "recon_audit_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_recon_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_audit_head")),
    )
    head = sa.table("recon_audit_head", sa.column("id", sa.SmallInteger()), sa.column("position"), sa.column("hash"))
    op.bulk_insert(head, [{"id": 1, "position": 0, "hash": "0" * 64}])


def downgrade() -> None:
    # The audit trail is evidence: refuse to drop a chain that has records.
    written = op.get_bind().execute(sa.text("SELECT count(*) FROM recon_audit")).scalar()
    if written:
        raise RuntimeError(f"refusing to downgrade: the review audit trail holds {written} records")
    op.drop_table("recon_audit_head")
    op.drop_index(op.f("ix_recon_audit_case_id"), table_name="recon_audit")
    op.drop_table("recon_audit")
    op.drop_index(op.f("ix_recon_case_comments_case_id"), table_name="recon_case_comments")
    op.drop_table("recon_case_comments")
    op.drop_index("ix_recon_cases_queue", table_name="recon_cases")
    op.drop_table("recon_cases")
