"""Identity: users, credentials, sessions and devices, roles.

The public interface other modules use. Adapters for the composition root live in
`kora.identity.adapters` (not imported here, so importing this pulls in no framework).
"""

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
from kora.identity.ports import IdentityUnitOfWork, WalletOpener
from kora.identity.service import IdentityService

__all__ = [
    "AccountLocked",
    "AuthenticationRequired",
    "DeviceMismatch",
    "Forbidden",
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
]
