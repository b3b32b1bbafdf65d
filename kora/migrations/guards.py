"""Checks a downgrade makes before it drops columns that hold money facts.

Upgrading again would bring such a column back with its default, not its value: a refund's
`refunded_amount` back to 0 lets the same payment be refunded a second time, a fee back to 0
misstates revenue. So a downgrade that would lose a fact some row depends on refuses, names
what it found, and changes nothing (the whole chain runs in one transaction, on both engines).
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from alembic import op


class DowngradeRefused(RuntimeError):
    """Rows depend on what the downgrade would drop."""


def refuse_if_payments(revision: str, conditions: Mapping[str, str]) -> None:
    """Raise DowngradeRefused if any payment matches one of `conditions` (what it means →
    an SQL condition on `payments`; constants written in the migration, never input)."""
    bind = op.get_bind()
    found: list[str] = []
    for meaning, condition in conditions.items():
        query = sa.select(sa.func.count()).select_from(sa.table("payments")).where(sa.text(condition))
        count = bind.execute(query).scalar_one()
        if count:
            found.append(f"{count} {meaning}")
    if found:
        raise DowngradeRefused(
            f"refusing to downgrade below revision {revision}: it would drop columns these payments "
            f"depend on, and upgrading again would not bring their values back ({'; '.join(found)}). "
            "Keep this revision, or restore a backup taken before it."
        )
