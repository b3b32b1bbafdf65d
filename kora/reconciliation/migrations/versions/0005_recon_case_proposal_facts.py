"""reconciliation review cases: the payment a proposal was made for, and when a correction's
posting was last tried

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

`proposal_payment_id` ties a proposal to the facts it was made for: an approval posts to that
payment and no other, even if a later match run names another payment for the line (ADR 0025).
`last_posting_at` orders the retries of approved corrections by their last attempt, so a few
failing ones cannot starve the others. Proposals made before this revision are tied to the
payment their case names now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.platform.db import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recon_cases") as batch:
        batch.add_column(sa.Column("proposal_payment_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("last_posting_at", UtcDateTime, nullable=True))
    op.execute(
        "UPDATE recon_cases SET proposal_payment_id = payment_id "
        "WHERE proposal_kind IS NOT NULL AND proposal_payment_id IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("recon_cases") as batch:
        batch.drop_column("last_posting_at")
        batch.drop_column("proposal_payment_id")
