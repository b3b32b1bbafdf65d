"""The password policy: length bounds, a deny-list of common passwords, and no phone number
inside the password. Pure: the deny-list is data handed in by whoever builds the policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kora.identity.domain.errors import WeakPassword
from kora.identity.domain.model import PhoneNumber

DEFAULT_MIN_LENGTH = 10
DEFAULT_MAX_LENGTH = 128
# Separators people put inside a number they type; removed before looking for the phone digits.
_SEPARATORS = str.maketrans("", "", " -._/()+")


@dataclass(frozen=True)
class PasswordPolicy:
    """Checks a (NFKC-normalized) password. Lengths count Unicode code points."""

    min_length: int = DEFAULT_MIN_LENGTH
    max_length: int = DEFAULT_MAX_LENGTH
    common_passwords: frozenset[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError("password policy needs 1 <= min_length <= max_length")

    @classmethod
    def with_common_passwords(
        cls,
        passwords: Iterable[str],
        *,
        min_length: int = DEFAULT_MIN_LENGTH,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> PasswordPolicy:
        return cls(
            min_length=min_length,
            max_length=max_length,
            common_passwords=frozenset(p.strip().lower() for p in passwords if p.strip()),
        )

    def violations(self, password: str, *, phone: PhoneNumber | None = None) -> tuple[str, ...]:
        reasons: list[str] = []
        if len(password) < self.min_length:
            reasons.append("too_short")
        if len(password) > self.max_length:
            reasons.append("too_long")
        if password.lower() in self.common_passwords:
            reasons.append("common_password")
        if phone is not None and _contains_phone(password, phone):
            reasons.append("contains_phone_number")
        return tuple(reasons)

    def check(self, password: str, *, phone: PhoneNumber | None = None) -> None:
        """Raises WeakPassword listing every rule the password breaks."""
        reasons = self.violations(password, phone=phone)
        if reasons:
            raise WeakPassword(reasons)


def _contains_phone(password: str, phone: PhoneNumber) -> bool:
    squeezed = password.translate(_SEPARATORS)
    international = phone.e164.removeprefix("+")
    return phone.national_number in squeezed or international in squeezed
