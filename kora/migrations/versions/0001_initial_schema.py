"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Every module's tables, and the database's own guards on money: append-only ledger, audit and
status-history tables; on PostgreSQL a check of each entry's sequence and balance_after and a
deferred check that every journal transaction balances.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


APPEND_ONLY = ("ledger_accounts", "ledger_transactions", "ledger_entries", "audit_log", "payment_status_history")

PG_FORBID_MUTATION = """
CREATE OR REPLACE FUNCTION kora_forbid_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'append a compensating record instead of changing history';
END;
$$
"""

# Each entry continues its account's chain: next sequence, balance_after = previous + effect,
# currency of the account, and customer money never below zero.
PG_CHECK_ENTRY = """
CREATE OR REPLACE FUNCTION kora_check_ledger_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    acct_kind text;
    acct_currency text;
    previous bigint;
    effect bigint;
BEGIN
    SELECT kind, currency INTO acct_kind, acct_currency FROM ledger_accounts WHERE id = NEW.account_id;
    IF acct_currency IS DISTINCT FROM NEW.currency THEN
        RAISE EXCEPTION 'ledger entry currency % differs from its account''s', NEW.currency
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.sequence = 1 THEN
        previous := 0;
    ELSE
        SELECT balance_after INTO previous FROM ledger_entries
         WHERE account_id = NEW.account_id AND sequence = NEW.sequence - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger entry sequence % leaves a gap', NEW.sequence
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF (acct_kind IN ('provider_clearing', 'settlement_bank')) = (NEW.direction = 'debit') THEN
        effect := NEW.amount;
    ELSE
        effect := -NEW.amount;
    END IF;
    IF NEW.balance_after <> previous + effect THEN
        RAISE EXCEPTION 'ledger entry balance_after % should be %', NEW.balance_after, previous + effect
            USING ERRCODE = 'check_violation';
    END IF;
    IF acct_kind IN ('wallet', 'merchant') AND NEW.balance_after < 0 THEN
        RAISE EXCEPTION 'customer account would go negative' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$
"""

# At commit, every journal transaction touched has >= 2 entries that balance per currency.
PG_CHECK_BALANCED = """
CREATE OR REPLACE FUNCTION kora_check_transaction_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    txn uuid;
    entry_count integer;
    unbalanced text;
BEGIN
    IF TG_TABLE_NAME = 'ledger_transactions' THEN
        txn := NEW.id;
    ELSE
        txn := NEW.transaction_id;
    END IF;
    SELECT count(*) INTO entry_count FROM ledger_entries WHERE transaction_id = txn;
    IF entry_count < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least two are needed', txn, entry_count
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT currency INTO unbalanced FROM ledger_entries WHERE transaction_id = txn
     GROUP BY currency
    HAVING sum(CASE WHEN direction = 'debit' THEN amount ELSE -amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in %', txn, unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$
"""

# A hold changes once: from active to captured, released or expired; nothing else about it.
PG_CHECK_HOLD = """
CREATE OR REPLACE FUNCTION kora_check_hold_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger_holds rows are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status <> 'active' OR NEW.status = 'active' OR NEW.amount <> OLD.amount
       OR NEW.account_id <> OLD.account_id OR NEW.currency <> OLD.currency
       OR NEW.payment_id IS DISTINCT FROM OLD.payment_id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'a hold only goes from active to captured, released or expired'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$
"""

SQLITE_CHECK_HOLD = (
    "CREATE TRIGGER ledger_holds_guard_update BEFORE UPDATE ON ledger_holds BEGIN "
    "SELECT RAISE(ABORT, 'a hold only goes from active to captured, released or expired') "
    "WHERE OLD.status <> 'active' OR NEW.status = 'active' OR NEW.amount <> OLD.amount "
    "OR NEW.account_id <> OLD.account_id OR NEW.currency <> OLD.currency; END",
    "CREATE TRIGGER ledger_holds_guard_delete BEFORE DELETE ON ledger_holds BEGIN "
    "SELECT RAISE(ABORT, 'ledger_holds rows are never deleted'); END",
)

SQLITE_CHECK_ENTRY = """
CREATE TRIGGER ledger_entries_check BEFORE INSERT ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entry breaks its account chain')
    WHERE (NEW.sequence > 1 AND NOT EXISTS (
               SELECT 1 FROM ledger_entries WHERE account_id = NEW.account_id AND sequence = NEW.sequence - 1))
       OR NEW.balance_after <> COALESCE(
               (SELECT balance_after FROM ledger_entries
                 WHERE account_id = NEW.account_id AND sequence = NEW.sequence - 1), 0)
            + CASE WHEN ((SELECT kind FROM ledger_accounts WHERE id = NEW.account_id)
                         IN ('provider_clearing', 'settlement_bank')) = (NEW.direction = 'debit')
                   THEN NEW.amount ELSE -NEW.amount END
       OR ((SELECT kind FROM ledger_accounts WHERE id = NEW.account_id) IN ('wallet', 'merchant')
           AND NEW.balance_after < 0)
       OR (SELECT currency FROM ledger_accounts WHERE id = NEW.account_id) <> NEW.currency;
END
"""


def _guards_upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(PG_FORBID_MUTATION)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_forbid_mutation BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION kora_forbid_mutation()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_forbid_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION kora_forbid_mutation()"
            )
        op.execute(PG_CHECK_ENTRY)
        op.execute(
            "CREATE TRIGGER ledger_entries_check BEFORE INSERT ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION kora_check_ledger_entry()"
        )
        op.execute(PG_CHECK_HOLD)
        op.execute(
            "CREATE TRIGGER ledger_holds_guard BEFORE UPDATE OR DELETE ON ledger_holds "
            "FOR EACH ROW EXECUTE FUNCTION kora_check_hold_change()"
        )
        op.execute(PG_CHECK_BALANCED)
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kora_check_transaction_balanced()"
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kora_check_transaction_balanced()"
        )
    elif bind.dialect.name == "sqlite":
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_forbid_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
            op.execute(
                f"CREATE TRIGGER {table}_forbid_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
        op.execute(SQLITE_CHECK_ENTRY)
        for statement in SQLITE_CHECK_HOLD:
            op.execute(statement)


def _guards_downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_transactions_balanced ON ledger_transactions")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_check ON ledger_entries")
        op.execute("DROP TRIGGER IF EXISTS ledger_holds_guard ON ledger_holds")
        op.execute("DROP FUNCTION IF EXISTS kora_check_hold_change()")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_forbid_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_forbid_mutation ON {table}")
        op.execute("DROP FUNCTION IF EXISTS kora_check_transaction_balanced()")
        op.execute("DROP FUNCTION IF EXISTS kora_check_ledger_entry()")
        op.execute("DROP FUNCTION IF EXISTS kora_forbid_mutation()")
    elif bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_check")
        op.execute("DROP TRIGGER IF EXISTS ledger_holds_guard_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_holds_guard_delete")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_forbid_delete")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_forbid_update")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("chain", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("chain >= 0", name=op.f("ck_audit_log_chain_not_negative")),
        sa.CheckConstraint("position >= 1", name=op.f("ck_audit_log_position_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("chain", "position", name="uq_audit_log_chain_position"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_correlation_id", ["correlation_id"], unique=False)
        batch_op.create_index("ix_audit_log_occurred_at", ["occurred_at"], unique=False)
        batch_op.create_index("ix_audit_log_subject", ["subject"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('in_flight','succeeded','failed')", name=op.f("ck_idempotency_keys_outcome_known")
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_idempotency_keys_payment_id"), ["payment_id"], unique=False)

    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("owner_ref", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('wallet','merchant','provider_clearing','settlement_bank','fee_revenue','suspense')",
            name=op.f("ck_ledger_accounts_kind_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("kind", "owner_ref", "currency", name=op.f("uq_ledger_accounts_kind_owner_ref_currency")),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("reverses_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_reverses_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_transactions_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(
            "uq_ledger_transactions_payment_step",
            ["payment_id", "kind"],
            unique=True,
            postgresql_where=sa.text("payment_id IS NOT NULL AND reverses_id IS NULL"),
            sqlite_where=sa.text("payment_id IS NOT NULL AND reverses_id IS NULL"),
        )
        batch_op.create_index(
            "uq_ledger_transactions_reverses_id",
            ["reverses_id"],
            unique=True,
            postgresql_where=sa.text("reverses_id IS NOT NULL"),
            sqlite_where=sa.text("reverses_id IS NOT NULL"),
        )

    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("failures >= 0", name=op.f("ck_login_throttle_failures_not_negative")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_throttle_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("initiated_by", sa.Uuid(), nullable=False),
        sa.Column("payer_wallet_id", sa.Uuid(), nullable=True),
        sa.Column("payee_wallet_id", sa.Uuid(), nullable=True),
        sa.Column("payer_user_id", sa.Uuid(), nullable=True),
        sa.Column("payee_user_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('INITIATED','AUTHORIZED','CAPTURED','SETTLED','FAILED','REVERSED')",
            name=op.f("ck_payments_status_known"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_correlation_id"), ["correlation_id"], unique=False)
        batch_op.create_index("ix_payments_initiated_by", ["initiated_by", "id"], unique=False)
        batch_op.create_index("ix_payments_status_updated", ["status", "updated_at"], unique=False)
        batch_op.create_index("ix_payments_payee_user", ["payee_user_id", "id"], unique=False)
        batch_op.create_index("ix_payments_payer_user", ["payer_user_id", "id"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("phone_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("display_name_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("phone_index", name=op.f("uq_users_phone_index")),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
    )
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("direction IN ('debit','credit')", name=op.f("ck_ledger_entries_direction_known")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.CheckConstraint("sequence > 0", name=op.f("ck_ledger_entries_sequence_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_ledger_entries_account_id_ledger_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("account_id", "sequence", name=op.f("uq_ledger_entries_account_id_sequence")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entries_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "ledger_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active','captured','released','expired')", name=op.f("ck_ledger_holds_status_known")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_holds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_ledger_holds_account_id_ledger_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_holds")),
    )
    with op.batch_alter_table("ledger_holds", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_holds_account_active", ["account_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_holds_payment_id"), ["payment_id"], unique=False)

    op.create_table(
        "payment_status_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_status_history_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_status_history")),
    )
    with op.batch_alter_table("payment_status_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_status_history_payment_id"), ["payment_id"], unique=False)

    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('customer', 'support', 'admin')", name=op.f("ck_user_roles_role_known")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_roles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_user_roles")),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("expires_at > issued_at", name=op.f("ck_refresh_tokens_expires_after_issue")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_auth_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_tokens_session_id"), ["session_id"], unique=False)

    _guards_upgrade()


def downgrade() -> None:
    _guards_downgrade()
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_session_id"))

    op.drop_table("refresh_tokens")
    op.drop_table("user_roles")
    with op.batch_alter_table("payment_status_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_status_history_payment_id"))

    op.drop_table("payment_status_history")
    with op.batch_alter_table("ledger_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_holds_payment_id"))
        batch_op.drop_index("ix_ledger_holds_account_active")

    op.drop_table("ledger_holds")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_payment_id"))

    op.drop_table("ledger_entries")
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_sessions_user_id"))

    op.drop_table("auth_sessions")
    op.drop_table("users")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_payer_user")
        batch_op.drop_index("ix_payments_payee_user")
        batch_op.drop_index("ix_payments_initiated_by")
        batch_op.drop_index(batch_op.f("ix_payments_correlation_id"))

    op.drop_table("payments")
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttle_updated_at"))

    op.drop_table("login_throttle")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_payment_id"))

    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_subject")
        batch_op.drop_index("ix_audit_log_occurred_at")
        batch_op.drop_index("ix_audit_log_correlation_id")

    op.drop_table("audit_log")
