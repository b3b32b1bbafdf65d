"""operational controls: pause an operation, take a provider out of routing (issue #7)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27

One row per switch that is on (`kora ops pause|resume|provider disable|enable`, the admin API
under /v1/admin/controls). Clearing a switch deletes its row; who changed what and why is in
the audit trail. No PII: targets are operation and provider names, the reason is checked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kora.migrations.guards import DowngradeRefused

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operational_controls",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("incident", sa.String(length=64), nullable=True),
        sa.Column("retry_after_seconds", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('operation', 'provider')", name=op.f("ck_operational_controls_kind_known")),
        sa.CheckConstraint(
            "kind <> 'operation' OR target IN ('cash-in', 'cash-out', 'p2p', 'merchant-payment')",
            name=op.f("ck_operational_controls_operation_known"),
        ),
        sa.CheckConstraint(
            "retry_after_seconds BETWEEN 1 AND 86400", name=op.f("ck_operational_controls_retry_after_range")
        ),
        sa.PrimaryKeyConstraint("kind", "target", name=op.f("pk_operational_controls")),
    )


def downgrade() -> None:
    # A switch that is on when the table goes would silently let through the traffic it held
    # back: that is the operator's call to make with `kora ops`, not a migration's.
    on = op.get_bind().execute(sa.text("SELECT count(*) FROM operational_controls")).scalar()
    if on:
        raise DowngradeRefused(
            f"refusing to downgrade 0012: {on} operational controls are on (clear them with `kora ops` first)"
        )
    op.drop_table("operational_controls")
