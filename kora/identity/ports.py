"""Identity's ports: one narrow Protocol per thing the use cases need from the outside.

Repositories work inside the caller's unit of work: they add, update and flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypedDict

from kora.audit.ports import AuditRecorder
from kora.identity.domain import (
    AccessClaims,
    AuthSession,
    PasswordPolicy,
    PhoneNumber,
    RefreshTokenRecord,
    Role,
    ThrottleState,
    UserRecord,
)
from kora.identity.domain.service_identity import ServiceClaims, ServiceIdentity

ThrottleScope = Literal["account", "ip"]


class PhoneNormalizer(Protocol):
    def normalize(self, raw: str) -> PhoneNumber:
        """The number in E.164 form, or InvalidPhoneNumber if it is not a valid number."""
        ...


class PasswordHasher(Protocol):
    """Slow password hashing. The async methods run the hash off the event loop."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """True only if the password matches; False on mismatch or an unreadable hash."""
        ...

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as `verify`, for a phone number with no account."""
        ...

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        ...


class TokenSigner(Protocol):
    def sign(self, claims: AccessClaims) -> str:
        """A signed access token (JWT) for these claims, with the current key's `kid`."""
        ...

    def verify(self, token: str) -> AccessClaims:
        """The claims of a token signed by a key of the ring, for our issuer and audience.
        Checks the signature only: expiry is the caller's (it owns the Clock).
        Raises InvalidToken."""
        ...

    def jwks(self) -> dict[str, Any]:
        """The public keys of the ring as a JWKS document."""
        ...


class ServiceTokenReader(Protocol):
    def read(self, token: str) -> tuple[ServiceIdentity, ServiceClaims]:
        """The trusted service whose key signed `token` (by its `kid`), and the token's claims.
        Checks the `typ` header and the signature only: audience, issuer, lifetime and scopes
        are the domain's rules (`admit_service_claims`), against the caller's Clock.
        Raises ServiceTokenInvalid (malformed, wrong_type, unknown_kid, bad_signature)."""
        ...


class PiiCipher(Protocol):
    """Authenticated encryption of PII at rest. `context` (e.g. `users.phone:<user id>`) is
    bound to the ciphertext, so a ciphertext copied to another row or column won't decrypt."""

    def encrypt(self, plaintext: str, *, context: str) -> bytes: ...

    def decrypt(self, ciphertext: bytes, *, context: str) -> str: ...


class BlindIndex(Protocol):
    """Keyed hashes that let us look values up without storing them."""

    def phone(self, e164: str) -> bytes:
        """HMAC-SHA256 of the normalized E.164 number (32 bytes)."""
        ...

    def throttle_key(self, scope: ThrottleScope, value: str) -> str:
        """An opaque key (at most 80 characters) for the login throttle of an account (by its
        phone index, hex) or of a client address; never the raw value."""
        ...


class WalletOpener(Protocol):
    async def open_wallet(self, owner_id: uuid.UUID, currency: str) -> uuid.UUID:
        """Open the customer's wallet inside the caller's transaction; returns the wallet id."""
        ...


class UserRepository(Protocol):
    async def add(self, user: UserRecord) -> None:
        """Insert a user and its roles. Raises PhoneNumberTaken if the phone index exists."""
        ...

    async def get(self, user_id: uuid.UUID) -> UserRecord | None: ...

    async def get_by_phone_index(self, phone_index: bytes) -> UserRecord | None: ...

    async def update_password_hash(self, user_id: uuid.UUID, password_hash: str, *, at: datetime) -> None: ...

    async def grant_role(self, user_id: uuid.UUID, role: Role, *, at: datetime) -> bool:
        """Give the user `role`; False (and nothing written) when the user already holds it."""
        ...


class RefreshTokenStore(Protocol):
    """Sessions (refresh-token families) and their refresh tokens, stored by hash."""

    async def open_session(self, session: AuthSession) -> None: ...

    async def get_session(self, session_id: uuid.UUID) -> AuthSession | None:
        """One primary-key lookup: cheap enough for every authenticated request."""
        ...

    async def revoke_session(self, session_id: uuid.UUID, *, at: datetime, reason: str) -> None:
        """Revoke the session and every refresh token of it (idempotent)."""
        ...

    async def add(self, token: RefreshTokenRecord) -> None: ...

    async def get(self, token_hash: bytes) -> RefreshTokenRecord | None: ...

    async def mark_used(self, token_hash: bytes, *, at: datetime) -> bool:
        """Mark an unused, unrevoked token used. False if it already was (a concurrent
        refresh won the race): the caller treats that as reuse."""
        ...


class LoginThrottle(Protocol):
    """Failure counters per opaque key (see BlindIndex.throttle_key)."""

    async def get(self, key: str, *, for_update: bool = False) -> ThrottleState | None: ...

    async def lock(self, key: str, *, at: datetime) -> ThrottleState:
        """The state of `key`, its row created (empty) if absent and locked until the end of the
        transaction, so concurrent attempts on one key are counted one after the other."""
        ...

    async def save(self, key: str, state: ThrottleState, *, at: datetime) -> None:
        """Insert or replace the state of this key."""
        ...

    async def clear(self, key: str) -> None: ...


class RequestNonceStore(Protocol):
    """The nonces each session has used on its sensitive requests (anti-replay)."""

    async def add(self, session_id: uuid.UUID, nonce: str, *, expires_at: datetime) -> bool:
        """Record that the session used `nonce`, in one conditional insert. False when the
        session already used it (the row exists): of concurrent twins, exactly one gets True."""
        ...

    async def add_many(self, entries: Sequence[tuple[uuid.UUID, str, datetime]]) -> set[tuple[uuid.UUID, str]]:
        """`add` for several distinct (session id, nonce, expires at) in one statement; returns
        the (session id, nonce) pairs actually recorded (the others were used before)."""
        ...

    async def relax_durability(self) -> None:
        """Let this transaction's commit return before it is flushed to disk (PostgreSQL's
        `synchronous_commit = off`; nothing to do on SQLite). Only for a transaction that
        writes nonces and nothing else: a database crash may forget the last fraction of a
        second of them, never corrupt anything."""
        ...

    async def purge(self, *, expired_before: datetime) -> int:
        """Delete the rows that expired before `expired_before`; returns how many."""
        ...


class IdentityUnitOfWork(Protocol):
    """One transaction. `async with` opens it; `commit()` makes it durable; leaving the block
    without committing rolls back."""

    @property
    def users(self) -> UserRepository: ...

    @property
    def refresh_tokens(self) -> RefreshTokenStore: ...

    @property
    def throttle(self) -> LoginThrottle: ...

    @property
    def wallets(self) -> WalletOpener: ...

    @property
    def audit(self) -> AuditRecorder: ...

    @property
    def request_nonces(self) -> RequestNonceStore: ...

    async def commit(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class IdentitySettings(Protocol):
    """The settings the identity use cases read (kora.platform.settings.Settings has them)."""

    @property
    def access_token_ttl_seconds(self) -> int: ...

    @property
    def refresh_token_ttl_seconds(self) -> int: ...

    @property
    def login_max_failures(self) -> int: ...

    @property
    def login_lockout_seconds(self) -> int: ...

    @property
    def login_ip_max_failures(self) -> int: ...

    @property
    def session_check_seconds(self) -> int:
        """How long a session seen active is trusted before it is read again (0: every request)."""
        ...

    @property
    def replay_window_seconds(self) -> int:
        """How far a sensitive request's X-Request-Timestamp may be from the server's clock."""
        ...


class IdentityAdapters(TypedDict):
    """The technology-bound collaborators of IdentityService, as keyword arguments:
    `IdentityService(uow_factory=..., clock=..., settings=..., **adapters)`."""

    hasher: PasswordHasher
    signer: TokenSigner
    cipher: PiiCipher
    index: BlindIndex
    phones: PhoneNormalizer
    policy: PasswordPolicy
