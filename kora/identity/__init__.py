"""Identity: users, credentials, sessions and devices, roles.

The public interface other modules use, plus `build_identity_adapters` for the composition
root (the individual adapter classes are in `kora.identity.adapters`).
"""

from kora.identity.adapters.factory import build_identity_adapters
from kora.identity.domain import (
    AccountLocked,
    AuthenticationRequired,
    DeviceMismatch,
    Forbidden,
    IdentityError,
    InvalidCredentials,
    InvalidDeviceId,
    InvalidDisplayName,
    InvalidPhoneNumber,
    InvalidRefreshToken,
    InvalidToken,
    PasswordPolicy,
    PhoneNumberTaken,
    Principal,
    RefreshTokenReused,
    Registration,
    Role,
    TokenPair,
    TooManyAttempts,
    UserNotFound,
    UserProfile,
    WeakPassword,
)
from kora.identity.ports import IdentityAdapters, IdentityUnitOfWork, WalletOpener
from kora.identity.service import IdentityService

__all__ = [
    "AccountLocked",
    "AuthenticationRequired",
    "DeviceMismatch",
    "Forbidden",
    "IdentityAdapters",
    "IdentityError",
    "IdentityService",
    "IdentityUnitOfWork",
    "InvalidCredentials",
    "InvalidDeviceId",
    "InvalidDisplayName",
    "InvalidPhoneNumber",
    "InvalidRefreshToken",
    "InvalidToken",
    "PasswordPolicy",
    "PhoneNumberTaken",
    "Principal",
    "RefreshTokenReused",
    "Registration",
    "Role",
    "TokenPair",
    "TooManyAttempts",
    "UserNotFound",
    "UserProfile",
    "WalletOpener",
    "WeakPassword",
    "build_identity_adapters",
]
