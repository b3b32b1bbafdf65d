"""Identity's tables. Only identity's adapters read or write them.

PII is stored encrypted (AES-256-GCM, see crypto.py); the phone number is found through its
keyed blind index. Refresh tokens are stored as SHA-256 hashes; throttle rows are keyed by
keyed hashes — never a raw phone number, IP address, password or token.
"""

from __future__ import annotations

import sqlalchemy as sa

from kora.platform.db import UtcDateTime, metadata

ROLE_NAMES = (
    "customer",
    "support",
    "admin",
    "merchant",
    "recon_reviewer",
    "recon_approver",
    "risk_analyst",
    "leadership",
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("phone_index", sa.LargeBinary(32), nullable=False),
    sa.Column("phone_ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("display_name_ciphertext", sa.LargeBinary, nullable=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("password_changed_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("phone_index"),
)

user_roles = sa.Table(
    "user_roles",
    metadata,
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("granted_at", UtcDateTime, nullable=False),
    sa.CheckConstraint("role IN ('" + "', '".join(ROLE_NAMES) + "')", name="role_known"),
)

# One row per login on one device; `id` is the session id (`sid` claim) and the family of the
# refresh tokens rotated from that login.
auth_sessions = sa.Table(
    "auth_sessions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("device_id", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column(
        "session_id",
        sa.Uuid,
        sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.CheckConstraint("expires_at > issued_at", name="expires_after_issue"),
)

login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_started_at", UtcDateTime, nullable=False),
    sa.Column("locked_until", UtcDateTime, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False, index=True),
    sa.CheckConstraint("failures >= 0", name="failures_not_negative"),
)

# Nonces of sensitive requests (anti-replay, ADR 0012), per session. A row is needed only while
# its request's timestamp could still be accepted (`expires_at`); expired rows are purged.
request_nonces = sa.Table(
    "request_nonces",
    metadata,
    sa.Column(
        "session_id",
        sa.Uuid,
        sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.CheckConstraint("length(nonce) >= 16", name="nonce_long_enough"),
)
