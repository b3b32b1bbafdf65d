"""Builds identity's adapters from Settings. Called by the composition root, never at import
time."""

from __future__ import annotations

from kora.identity.adapters.common_passwords import load_common_passwords
from kora.identity.adapters.crypto import AesGcmPiiCipher, Argon2PasswordHasher, HmacBlindIndex
from kora.identity.adapters.phone import PhonenumbersNormalizer
from kora.identity.adapters.service_tokens import JwtServiceTokenReader, ServiceKeyDirectory
from kora.identity.adapters.tokens import Ed25519Keyring, JwtEdDsaSigner
from kora.identity.domain import PasswordPolicy
from kora.identity.domain.password_policy import DEFAULT_MIN_LENGTH
from kora.identity.ports import IdentityAdapters
from kora.identity.service_auth import ServiceAuthenticator
from kora.kernel import Clock
from kora.platform.settings import Settings


def build_identity_adapters(
    settings: Settings,
    *,
    default_region: str | None = None,
    password_min_length: int = DEFAULT_MIN_LENGTH,
) -> IdentityAdapters:
    """Hasher (Argon2id with settings.argon2_time_cost / argon2_memory_kib), EdDSA signer,
    PII cipher, blind index, phone normalizer and password policy.

    Raises ConfigurationError when a secret is missing or malformed.
    """
    return IdentityAdapters(
        hasher=Argon2PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib),
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


def build_service_authenticator(settings: Settings, clock: Clock) -> ServiceAuthenticator:
    """The services the core trusts (KORA_SERVICE_IDENTITIES), judged by `clock`.
    Raises ConfigurationError when the setting is malformed."""
    reader = JwtServiceTokenReader(ServiceKeyDirectory.from_json(settings.service_identities))
    return ServiceAuthenticator(reader, clock, services=reader.services)
