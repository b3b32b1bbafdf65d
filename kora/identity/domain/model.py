"""Identity model: roles, the authenticated principal, and the records the use cases store.
Pure Python: no I/O, no framework. Phone numbers and display names only ever appear here as
a validated `PhoneNumber` on their way in, or as ciphertext in stored records."""

from __future__ import annotations

import enum
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from kora.identity.domain.errors import InvalidDeviceId, InvalidDisplayName, InvalidPhoneNumber

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DIGITS = re.compile(r"[0-9]{4,15}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
DISPLAY_NAME_MAX_LENGTH = 64


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    SUPPORT = "support"
    ADMIN = "admin"
    MERCHANT = "merchant"  # may receive merchant payments and refund them
    RECON_REVIEWER = "recon_reviewer"  # reconciliation staff: reviews cases, proposes corrections
    RECON_APPROVER = "recon_approver"  # reconciliation staff: approves another reviewer's correction
    RISK_ANALYST = "risk_analyst"  # risk staff: approves or rejects payments held for review
    LEADERSHIP = "leadership"  # reads business KPIs (the KPI API and console); moves no money

    @property
    def is_staff(self) -> bool:
        """Staff accounts are made by the CLI (no wallet); customers register, merchants are granted."""
        return self in STAFF_ROLES


STAFF_ROLES = frozenset(
    {Role.SUPPORT, Role.ADMIN, Role.RECON_REVIEWER, Role.RECON_APPROVER, Role.RISK_ANALYST, Role.LEADERSHIP}
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an authenticated user on one device, within one session."""

    user_id: uuid.UUID
    roles: frozenset[Role]
    device_id: str
    session_id: uuid.UUID

    def has_role(self, role: Role | str) -> bool:
        """Whether the principal holds `role` (a Role or its name; an unknown name is a bug
        and raises ValueError)."""
        return Role(role) in self.roles

    @property
    def actor(self) -> str:
        """The audit actor for this caller."""
        return f"user:{self.user_id}"


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A normalized phone number: `e164` (e.g. +221771234567) and its national significant
    number (771234567). Built by a `PhoneNormalizer`; this only checks the shape."""

    e164: str
    national_number: str

    def __post_init__(self) -> None:
        if not _E164.fullmatch(self.e164) or not _DIGITS.fullmatch(self.national_number):
            raise InvalidPhoneNumber()
        if not self.e164.endswith(self.national_number):
            raise InvalidPhoneNumber()

    def __repr__(self) -> str:  # never leak the number through a log line or a traceback
        return "PhoneNumber(<redacted>)"

    __str__ = __repr__


def normalize_password(password: str) -> str:
    """NFKC, as NIST SP 800-63B recommends, so the same password typed on two keyboards
    hashes the same. Applied at registration and at login alike."""
    return unicodedata.normalize("NFKC", password)


def validate_display_name(display_name: str | None) -> str | None:
    """A trimmed, NFC-normalized display name of at most 64 printable characters; blank → None."""
    if display_name is None:
        return None
    name = unicodedata.normalize("NFC", display_name).strip()
    if not name:
        return None
    if len(name) > DISPLAY_NAME_MAX_LENGTH or any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for ch in name
    ):
        raise InvalidDisplayName()
    return name


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise InvalidDeviceId()
    return device_id


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as stored: PII only as ciphertext plus the keyed blind index of the phone."""

    id: uuid.UUID
    phone_index: bytes
    phone_ciphertext: bytes
    display_name_ciphertext: bytes | None
    password_hash: str
    roles: frozenset[Role]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuthSession:
    """One login on one device; also the family of the refresh tokens rotated from it."""

    id: uuid.UUID
    user_id: uuid.UUID
    device_id: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """A refresh token as stored: only its SHA-256 hash, never the token."""

    token_hash: bytes
    session_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What an access token says, issuer and audience aside (the signer adds and checks those)."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    device_id: str
    roles: frozenset[Role]
    issued_at: datetime
    expires_at: datetime
    token_id: str


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)

    def __repr__(self) -> str:
        return f"TokenPair(<redacted>, expires_in={self.expires_in})"


@dataclass(frozen=True, slots=True)
class Registration:
    user_id: uuid.UUID
    wallet_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A user's decrypted profile, for the user themself or for support."""

    user_id: uuid.UUID
    phone_number: str
    display_name: str | None
    roles: frozenset[Role]
    created_at: datetime

    def __repr__(self) -> str:
        return f"UserProfile(user_id={self.user_id}, <redacted>)"
