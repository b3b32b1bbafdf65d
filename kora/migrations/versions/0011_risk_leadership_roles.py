"""risk and leadership roles: risk_analyst and leadership

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26

Staff roles for the risk review queue (issue #6: `risk_analyst` approves or rejects payments held
for review) and the KPI console (issue #7: `leadership` reads business KPIs). Only the role
names the `user_roles` check accepts change.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('customer', 'support', 'admin', 'merchant', 'recon_reviewer', 'recon_approver')"
NEW_ROLES = (
    "role IN ('customer', 'support', 'admin', 'merchant', 'recon_reviewer', 'recon_approver', "
    "'risk_analyst', 'leadership')"
)


def upgrade() -> None:
    with op.batch_alter_table("user_roles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_roles_role_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_user_roles_role_known"), NEW_ROLES)


def downgrade() -> None:
    # Staff losing these roles keep their account and other roles.
    op.execute("DELETE FROM user_roles WHERE role IN ('risk_analyst', 'leadership')")
    with op.batch_alter_table("user_roles", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_roles_role_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_user_roles_role_known"), OLD_ROLES)
