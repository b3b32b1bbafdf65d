"""Phone number normalization with Google's libphonenumber rules (the `phonenumbers` package)."""

from __future__ import annotations

import phonenumbers

from kora.identity.domain import InvalidPhoneNumber, PhoneNumber

_MAX_INPUT_LENGTH = 32


class PhonenumbersNormalizer:
    """Accepts international input (+221 77 123 45 67) or, when `default_region` is set
    (ISO 3166 alpha-2, e.g. "SN"), national input (77 123 45 67). Only numbers valid for
    their region pass."""

    def __init__(self, *, default_region: str | None = None) -> None:
        self._region = default_region

    def normalize(self, raw: str) -> PhoneNumber:
        if not isinstance(raw, str) or not raw.strip() or len(raw) > _MAX_INPUT_LENGTH:
            raise InvalidPhoneNumber()
        try:
            parsed = phonenumbers.parse(raw, self._region)
        except phonenumbers.NumberParseException:
            raise InvalidPhoneNumber() from None
        if not phonenumbers.is_valid_number(parsed):
            raise InvalidPhoneNumber()
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        national = phonenumbers.national_significant_number(parsed)
        return PhoneNumber(e164=e164, national_number=national)
