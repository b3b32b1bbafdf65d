"""Builds identity's adapters (and, for convenience, the whole service) from Settings.
Called by the composition root, never at import time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.audit.ports import AuditRecorder
from kora.identity.adapters.common_passwords import load_common_passwords
from kora.identity.adapters.crypto import AesGcmPiiCipher, Argon2PasswordHasher, HmacBlindIndex
from kora.identity.adapters.phone import PhonenumbersNormalizer
from kora.identity.adapters.tokens import Ed25519Keyring, JwtEdDsaSigner
from kora.identity.adapters.uow import SqlIdentityUnitOfWork
from kora.identity.domain import PasswordPolicy
from kora.identity.domain.password_policy import DEFAULT_MIN_LENGTH
from kora.identity.ports import WalletOpener
from kora.identity.service import IdentityService
from kora.kernel import Clock
from kora.platform.settings import Settings


@dataclass(frozen=True)
class IdentityAdapters:
    hasher: Argon2PasswordHasher
    signer: JwtEdDsaSigner
    cipher: AesGcmPiiCipher
    index: HmacBlindIndex
    phones: PhonenumbersNormalizer
    policy: PasswordPolicy


def build_identity_adapters(
    settings: Settings,
    *,
    default_region: str | None = None,
    password_min_length: int = DEFAULT_MIN_LENGTH,
    hasher: Argon2PasswordHasher | None = None,
) -> IdentityAdapters:
    """Raises ConfigurationError when a secret is missing or malformed."""
    return IdentityAdapters(
        hasher=hasher or Argon2PasswordHasher(),
        signer=JwtEdDsaSigner(
            Ed25519Keyring.from_json(settings.secret("KORA_JWT_SIGNING_KEYS")),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        ),
        cipher=AesGcmPiiCipher.from_setting(settings.secret("KORA_PII_ENCRYPTION_KEY")),
        index=HmacBlindIndex.from_setting(settings.secret("KORA_PII_INDEX_KEY")),
        phones=PhonenumbersNormalizer(default_region=default_region),
        policy=PasswordPolicy.with_common_passwords(load_common_passwords(), min_length=password_min_length),
    )


def build_identity_service(
    settings: Settings,
    *,
    engine: AsyncEngine,
    clock: Clock,
    wallets: Callable[[AsyncConnection], WalletOpener],
    audit: Callable[[AsyncConnection], AuditRecorder],
    adapters: IdentityAdapters | None = None,
) -> IdentityService:
    """The identity service on SQL storage. `wallets` and `audit` build the ledger's wallet
    opener and the audit recorder on the unit of work's connection."""
    parts = adapters or build_identity_adapters(settings)
    return IdentityService(
        uow_factory=lambda: SqlIdentityUnitOfWork(engine, wallets=wallets, audit=audit),
        hasher=parts.hasher,
        signer=parts.signer,
        cipher=parts.cipher,
        index=parts.index,
        phones=parts.phones,
        clock=clock,
        settings=settings,
        policy=parts.policy,
    )
