"""In-memory fakes of identity's ports, and a builder of an IdentityService on them.

The fake unit of work copies the state on entry and publishes it on commit, so a use case
that raises before committing leaves nothing behind — like a real transaction."""

from __future__ import annotations

import base64
import copy
import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.audit.ports import AuditDetail, AuditEvent, record_one_by_one
from kora.identity import IdentityService
from kora.identity.adapters import (
    AesGcmPiiCipher,
    Ed25519Keyring,
    HmacBlindIndex,
    JwtEdDsaSigner,
    PhonenumbersNormalizer,
)
from kora.identity.domain import (
    AuthSession,
    PasswordPolicy,
    PhoneNumberTaken,
    RefreshTokenRecord,
    ThrottleState,
    UserRecord,
)
from kora.kernel import FixedClock, new_id
from kora.platform.settings import Settings

PHONE = "+221771234567"  # Senegal, Orange mobile range
OTHER_PHONE = "+2250701020304"  # Côte d'Ivoire
PASSWORD = "correct horse battery"
DEVICE = "device-1"


@dataclass
class State:
    users: dict[uuid.UUID, UserRecord] = field(default_factory=dict)
    sessions: dict[uuid.UUID, AuthSession] = field(default_factory=dict)
    tokens: dict[bytes, RefreshTokenRecord] = field(default_factory=dict)
    throttle: dict[str, ThrottleState] = field(default_factory=dict)
    wallets: dict[uuid.UUID, tuple[uuid.UUID, str]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)


class FakeUsers:
    def __init__(self, state: State) -> None:
        self.state = state

    async def add(self, user: UserRecord) -> None:
        if any(u.phone_index == user.phone_index for u in self.state.users.values()):
            raise PhoneNumberTaken()
        self.state.users[user.id] = user

    async def get(self, user_id: uuid.UUID) -> UserRecord | None:
        return self.state.users.get(user_id)

    async def get_by_phone_index(self, phone_index: bytes) -> UserRecord | None:
        return next((u for u in self.state.users.values() if u.phone_index == phone_index), None)

    async def update_password_hash(self, user_id: uuid.UUID, password_hash: str, *, at: datetime) -> None:
        self.state.users[user_id] = replace(self.state.users[user_id], password_hash=password_hash)


class FakeRefreshTokens:
    def __init__(self, state: State) -> None:
        self.state = state

    async def open_session(self, session: AuthSession) -> None:
        self.state.sessions[session.id] = session

    async def get_session(self, session_id: uuid.UUID) -> AuthSession | None:
        return self.state.sessions.get(session_id)

    async def revoke_session(self, session_id: uuid.UUID, *, at: datetime, reason: str) -> None:
        session = self.state.sessions.get(session_id)
        if session is not None and session.revoked_at is None:
            self.state.sessions[session_id] = replace(session, revoked_at=at)
        for key, token in self.state.tokens.items():
            if token.session_id == session_id and token.revoked_at is None:
                self.state.tokens[key] = replace(token, revoked_at=at)

    async def add(self, token: RefreshTokenRecord) -> None:
        self.state.tokens[token.token_hash] = token

    async def get(self, token_hash: bytes) -> RefreshTokenRecord | None:
        return self.state.tokens.get(token_hash)

    async def mark_used(self, token_hash: bytes, *, at: datetime) -> bool:
        token = self.state.tokens.get(token_hash)
        if token is None or token.used_at is not None or token.revoked_at is not None:
            return False
        self.state.tokens[token_hash] = replace(token, used_at=at)
        return True


class FakeThrottle:
    def __init__(self, state: State) -> None:
        self.state = state

    async def get(self, key: str, *, for_update: bool = False) -> ThrottleState | None:
        return self.state.throttle.get(key)

    async def lock(self, key: str, *, at: datetime) -> ThrottleState:
        return self.state.throttle.setdefault(key, ThrottleState(failures=0, window_started_at=at))

    async def save(self, key: str, state: ThrottleState, *, at: datetime) -> None:
        self.state.throttle[key] = state

    async def clear(self, key: str) -> None:
        self.state.throttle.pop(key, None)


class FakeWallets:
    def __init__(self, state: State, *, fail: bool = False) -> None:
        self.state = state
        self.fail = fail

    async def open_wallet(self, owner_id: uuid.UUID, currency: str) -> uuid.UUID:
        if self.fail:
            raise RuntimeError("ledger unavailable")
        wallet_id = new_id()
        self.state.wallets[wallet_id] = (owner_id, currency)
        return wallet_id


class FakeAudit:
    def __init__(self, state: State) -> None:
        self.state = state

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        correlation_id: str | None,
        outcome: str = "success",
        details: Mapping[str, AuditDetail] | None = None,
    ) -> None:
        self.state.audit.append(
            {
                "actor": actor,
                "action": action,
                "subject": subject,
                "correlation_id": correlation_id,
                "outcome": outcome,
                "details": dict(details or {}),
            }
        )

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        await record_one_by_one(self, events)


class FakeUnitOfWork:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._work = State()

    async def __aenter__(self) -> Self:
        self._store.opened += 1
        self._work = copy.deepcopy(self._store.state)
        self.users = FakeUsers(self._work)
        self.refresh_tokens = FakeRefreshTokens(self._work)
        self.throttle = FakeThrottle(self._work)
        self.wallets = FakeWallets(self._work, fail=self._store.wallets_fail)
        self.audit = FakeAudit(self._work)
        return self

    async def commit(self) -> None:
        self._store.state = copy.deepcopy(self._work)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


@dataclass
class Store:
    state: State = field(default_factory=State)
    wallets_fail: bool = False
    opened: int = 0

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


class FakeHasher:
    """Hashes as `v<version>$<password>`; `version` plays the role of argon2 parameters."""

    def __init__(self, version: int = 1) -> None:
        self.version = version
        self.verified = 0
        self.dummy_verified = 0
        self.hashed = 0

    async def hash(self, password: str) -> str:
        self.hashed += 1
        return f"v{self.version}${password}"

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verified += 1
        return password_hash.split("$", 1)[1] == password

    async def verify_dummy(self, password: str) -> None:
        self.dummy_verified += 1

    def needs_rehash(self, password_hash: str) -> bool:
        return not password_hash.startswith(f"v{self.version}$")


def new_key_b64() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def ed25519_pem() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def keyring_json(*entries: tuple[str, str]) -> str:
    return json.dumps([{"kid": kid, "private_key_pem": pem} for kid, pem in entries])


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "secrets": {
            "KORA_JWT_SIGNING_KEYS": keyring_json(("k1", ed25519_pem())),
            "KORA_PII_ENCRYPTION_KEY": new_key_b64(),
            "KORA_PII_INDEX_KEY": new_key_b64(),
        },
        "login_max_failures": 3,
        "login_ip_max_failures": 10,
        "login_lockout_seconds": 900,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class World:
    service: IdentityService
    store: Store
    clock: FixedClock
    hasher: FakeHasher
    settings: Settings
    signer: JwtEdDsaSigner
    cipher: AesGcmPiiCipher
    index: HmacBlindIndex

    @property
    def state(self) -> State:
        return self.store.state

    def actions(self) -> list[str]:
        return [record["action"] for record in self.state.audit]


COMMON = frozenset({"password123", "qwertyuiop", "1234567890", "iloveyou12"})


def build_world(
    *, settings: Settings | None = None, store: Store | None = None, hasher: FakeHasher | None = None
) -> World:
    settings = settings or make_settings()
    store = store or Store()
    clock = FixedClock()
    hasher = hasher or FakeHasher()
    signer = JwtEdDsaSigner(
        Ed25519Keyring.from_json(settings.secret("KORA_JWT_SIGNING_KEYS")),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    cipher = AesGcmPiiCipher.from_setting(settings.secret("KORA_PII_ENCRYPTION_KEY"))
    index = HmacBlindIndex.from_setting(settings.secret("KORA_PII_INDEX_KEY"))
    service = IdentityService(
        uow_factory=store.uow,
        hasher=hasher,
        signer=signer,
        cipher=cipher,
        index=index,
        phones=PhonenumbersNormalizer(),
        clock=clock,
        settings=settings,
        policy=PasswordPolicy(common_passwords=COMMON),
    )
    return World(service, store, clock, hasher, settings, signer, cipher, index)
