"""reconciliation roles: recon_reviewer and recon_approver

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

The reconciliation service's staff (ADR 0023): reviewers propose corrections, approvers approve
another person's. Only the role names the `user_roles` check accepts change.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('customer', 'support', 'admin', 'merchant')"
NEW_ROLES = "role IN ('customer', 'support', 'admin', 'merchant', 'recon_reviewer', 'recon_approver')"


def upgrade() -> None:
    with op.batch_alter_table("user_roles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_roles_role_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_user_roles_role_known"), NEW_ROLES)


def downgrade() -> None:
    # Staff losing a reconciliation role keep their account and other roles.
    op.execute("DELETE FROM user_roles WHERE role IN ('recon_reviewer', 'recon_approver')")
    with op.batch_alter_table("user_roles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_roles_role_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_user_roles_role_known"), OLD_ROLES)
