# Error names are the business vocabulary (InvalidCredentials, not InvalidCredentialsError).
"""Identity's domain errors. Each carries a stable snake_case `code`; the HTTP layer maps codes
to statuses in one place. Messages are safe to show a client: they never say whether a phone
number is registered and never contain PII, passwords or tokens."""

from __future__ import annotations

from typing import ClassVar


class IdentityError(Exception):
    """Base of identity's domain errors."""

    code: ClassVar[str] = "identity_error"
    default_message: ClassVar[str] = "identity error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self)


class InvalidPhoneNumber(IdentityError):
    code = "invalid_phone_number"
    default_message = "phone_number is not a valid phone number in E.164 form"


class InvalidDisplayName(IdentityError):
    code = "invalid_display_name"
    default_message = "display_name must be 1 to 64 printable characters"


class InvalidDeviceId(IdentityError):
    code = "invalid_device_id"
    default_message = "device_id must be 1 to 128 characters among A-Z a-z 0-9 . _ : -"


class WeakPassword(IdentityError):
    """The password breaks the policy; `reasons` lists which rules (too_short, too_long,
    common_password, contains_phone_number)."""

    code = "weak_password"
    default_message = "password does not meet the password policy"

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__(f"password does not meet the password policy: {', '.join(reasons)}")
        self.reasons = reasons


class PhoneNumberTaken(IdentityError):
    code = "phone_number_taken"
    default_message = "an account already exists for this phone number"


class InvalidCredentials(IdentityError):
    """Unknown phone number or wrong password: deliberately the same error."""

    code = "invalid_credentials"
    default_message = "invalid phone number or password"


class _Throttled(IdentityError):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__()
        self.retry_after_seconds = max(1, retry_after_seconds)


class AccountLocked(_Throttled):
    """Too many failed logins for this phone number (registered or not)."""

    code = "account_locked"
    default_message = "too many failed attempts for this account; try again later"


class TooManyAttempts(_Throttled):
    """Too many failed logins from this client address."""

    code = "too_many_attempts"
    default_message = "too many failed attempts; try again later"


class InvalidRefreshToken(IdentityError):
    code = "invalid_refresh_token"
    default_message = "refresh token is invalid, expired or revoked"


class RefreshTokenReused(IdentityError):
    """An already rotated refresh token came back: its whole session was revoked."""

    code = "refresh_token_reused"
    default_message = "refresh token was already used; the session has been revoked"


class AuthenticationRequired(IdentityError):
    code = "not_authenticated"
    default_message = "a bearer access token and an X-Device-ID header are required"


class InvalidToken(IdentityError):
    code = "invalid_token"
    default_message = "access token is invalid or expired"


class DeviceMismatch(IdentityError):
    code = "device_mismatch"
    default_message = "access token was issued to another device"


class Forbidden(IdentityError):
    code = "forbidden"
    default_message = "this operation needs a role the caller does not have"


class UserNotFound(IdentityError):
    code = "user_not_found"
    default_message = "user not found"
