"""Database-enforced immutability of append-only tables (run these from the Alembic migration).

PostgreSQL: one generic trigger function, `kora_forbid_mutation()`, raises on UPDATE, DELETE
and TRUNCATE and names the table (TG_TABLE_NAME) in its message; each append-only table gets a
BEFORE UPDATE OR DELETE row trigger and a BEFORE TRUNCATE statement trigger calling it. The
ledger tables reuse the same function through `postgres_forbid_mutation_ddl(table)`.
SQLite: BEFORE UPDATE / BEFORE DELETE triggers that RAISE(ABORT) (SQLite has no TRUNCATE, and
a trigger disables its delete-all shortcut).

Each list holds one statement per string: execute them one by one (asyncpg runs one
statement per call).
"""

from __future__ import annotations

import re

FORBID_MUTATION_FUNCTION = "kora_forbid_mutation"

POSTGRES_FORBID_MUTATION_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FORBID_MUTATION_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a compensating record instead of changing history';
END;
$$
""".strip()

# Drop the function only after every table's triggers are gone (ledger tables share it).
POSTGRES_DROP_FORBID_MUTATION_FUNCTION = f"DROP FUNCTION IF EXISTS {FORBID_MUTATION_FUNCTION}()"

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,50}")


def _table(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain table name: {name!r}")
    return name


def postgres_forbid_mutation_ddl(table: str) -> list[str]:
    """Triggers making `table` append-only on PostgreSQL (needs the function created first)."""
    t = _table(table)
    return [
        f"CREATE TRIGGER {t}_forbid_mutation BEFORE UPDATE OR DELETE ON {t} "
        f"FOR EACH ROW EXECUTE FUNCTION {FORBID_MUTATION_FUNCTION}()",
        f"CREATE TRIGGER {t}_forbid_truncate BEFORE TRUNCATE ON {t} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {FORBID_MUTATION_FUNCTION}()",
    ]


def postgres_drop_forbid_mutation_ddl(table: str) -> list[str]:
    t = _table(table)
    return [
        f"DROP TRIGGER IF EXISTS {t}_forbid_truncate ON {t}",
        f"DROP TRIGGER IF EXISTS {t}_forbid_mutation ON {t}",
    ]


def sqlite_forbid_mutation_ddl(table: str) -> list[str]:
    """Triggers making `table` append-only on SQLite."""
    t = _table(table)
    return [
        f"CREATE TRIGGER {t}_forbid_update BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END",
        f"CREATE TRIGGER {t}_forbid_delete BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END",
    ]


def sqlite_drop_forbid_mutation_ddl(table: str) -> list[str]:
    t = _table(table)
    return [f"DROP TRIGGER IF EXISTS {t}_forbid_delete", f"DROP TRIGGER IF EXISTS {t}_forbid_update"]


POSTGRES_DDL: list[str] = [POSTGRES_FORBID_MUTATION_FUNCTION, *postgres_forbid_mutation_ddl("audit_log")]
"""Upgrade, PostgreSQL: the shared function (CREATE OR REPLACE) and audit_log's triggers."""

POSTGRES_DROP_DDL: list[str] = postgres_drop_forbid_mutation_ddl("audit_log")
"""Downgrade, PostgreSQL: audit_log's triggers only; see POSTGRES_DROP_FORBID_MUTATION_FUNCTION."""

SQLITE_DDL: list[str] = sqlite_forbid_mutation_ddl("audit_log")
SQLITE_DROP_DDL: list[str] = sqlite_drop_forbid_mutation_ddl("audit_log")
