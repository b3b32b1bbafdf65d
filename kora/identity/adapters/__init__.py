"""Identity's adapters, for the composition root (other modules use `kora.identity`)."""

from kora.identity.adapters.common_passwords import load_common_passwords
from kora.identity.adapters.crypto import (
    AesGcmPiiCipher,
    Argon2PasswordHasher,
    HmacBlindIndex,
    PiiDecryptionError,
)
from kora.identity.adapters.factory import build_identity_adapters
from kora.identity.adapters.nonces import SqlRequestNonceStore
from kora.identity.adapters.phone import PhonenumbersNormalizer
from kora.identity.adapters.sql import SqlLoginThrottle, SqlRefreshTokenStore, SqlUserRepository
from kora.identity.adapters.tokens import Ed25519Keyring, JwtEdDsaSigner, KeyringEntry
from kora.identity.adapters.uow import SqlIdentityUnitOfWork

__all__ = [
    "AesGcmPiiCipher",
    "Argon2PasswordHasher",
    "Ed25519Keyring",
    "HmacBlindIndex",
    "JwtEdDsaSigner",
    "KeyringEntry",
    "PhonenumbersNormalizer",
    "PiiDecryptionError",
    "SqlIdentityUnitOfWork",
    "SqlLoginThrottle",
    "SqlRefreshTokenStore",
    "SqlRequestNonceStore",
    "SqlUserRepository",
    "build_identity_adapters",
    "load_common_passwords",
]
