"""What an audit record may contain: opaque ids, dotted action names, codes and amounts; never
PII. The checks are conservative on purpose: a refused record makes its caller fail loudly in
tests, while PII written to an append-only table could never be erased.

Error messages never repeat a refused value (it may be the very PII being refused).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

AuditDetail = str | int | bool | None

MAX_ACTOR_LENGTH = 200
MAX_SUBJECT_LENGTH = 200
MAX_ACTION_LENGTH = 100
MAX_OUTCOME_LENGTH = 32
MAX_CORRELATION_ID_LENGTH = 128
MAX_DETAILS = 32
MAX_DETAIL_VALUE_LENGTH = 256

# Key names that say "this is personal data or a credential". Matched as substrings of the key,
# lower-cased with separators removed, so `phoneNumber`, `user_name` and `refresh-token` are caught.
DENIED_KEY_PARTS = (
    "phone",
    "msisdn",
    "name",
    "password",
    "passwd",
    "token",
    "secret",
    "email",
    "iban",
    "cvv",
)
# Short words matched only as whole segments of the key (`pin`, not `shipping`).
DENIED_KEY_WORDS = frozenset({"pin", "otp", "pan", "dob"})

_ACTION = re.compile(r"[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+")
_OUTCOME = re.compile(r"[a-z][a-z0-9_]*")
_DETAIL_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LONG_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")
_DIGIT_RUN = re.compile(r"\d{8,}")
_INTERNATIONAL_NUMBER = re.compile(r"\+\s*\d[\d\s.()-]*\d")


class InvalidAuditRecordError(ValueError):
    """The record would carry PII or malformed fields; nothing was written."""

    code = "invalid_audit_record"


def looks_like_phone_number(value: str) -> bool:
    """True when `value` holds a run of 8+ digits, or an international `+...` number with 8+
    digits, once UUIDs and long hex digests (whose digits are random) are set aside."""
    scrubbed = _UUID.sub(" ", value)
    scrubbed = _LONG_HEX.sub(lambda m: m[0] if m[0].isdigit() else " ", scrubbed)
    return bool(_DIGIT_RUN.search(scrubbed)) or _has_international_number(scrubbed)


def _has_international_number(value: str) -> bool:
    return any(sum(ch.isdigit() for ch in m[0]) >= 8 for m in _INTERNATIONAL_NUMBER.finditer(value))


def _check_text(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidAuditRecordError(f"{field} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidAuditRecordError(f"{field} is longer than {max_length} characters")
    if not value.isprintable() or value != value.strip():
        raise InvalidAuditRecordError(f"{field} has control characters or surrounding whitespace")
    return value


def validate_fields(*, actor: str, action: str, subject: str, outcome: str, correlation_id: str | None) -> None:
    """Refuses malformed fields, and actor/action/subject that look like they hold a phone
    number (they must be opaque ids such as `user:<uuid>`, `payment:<uuid>`)."""
    _check_text("actor", actor, MAX_ACTOR_LENGTH)
    _check_text("subject", subject, MAX_SUBJECT_LENGTH)
    _check_text("action", action, MAX_ACTION_LENGTH)
    for field, value in (("actor", actor), ("action", action), ("subject", subject)):
        if looks_like_phone_number(value):
            raise InvalidAuditRecordError(f"{field} looks like it contains a phone number: use an opaque id instead")
    if not _ACTION.fullmatch(action):
        raise InvalidAuditRecordError("action must be a dotted lower-case name, e.g. `payment.p2p.captured`")
    _check_text("outcome", outcome, MAX_OUTCOME_LENGTH)
    if not _OUTCOME.fullmatch(outcome):
        raise InvalidAuditRecordError("outcome must be a lower-case code, e.g. `success`")
    if correlation_id is not None:
        _check_text("correlation_id", correlation_id, MAX_CORRELATION_ID_LENGTH)


def is_denied_key(key: str) -> bool:
    lowered = key.lower()
    if any(part in re.sub(r"[^a-z0-9]", "", lowered) for part in DENIED_KEY_PARTS):
        return True
    return any(word in DENIED_KEY_WORDS for word in re.split(r"[^a-z0-9]+", lowered))


def validate_details(details: Mapping[str, AuditDetail] | None) -> None:
    """Details are a flat mapping of ids, codes, amounts and flags: values are str, int, bool or
    None (no floats, no nesting). A key naming personal data or a credential is refused unless
    its value is a flag or None, which cannot carry any (`password_rehashed: True` is fine)."""
    if details is None:
        return
    if not isinstance(details, Mapping):
        raise InvalidAuditRecordError("details must be a mapping")
    if len(details) > MAX_DETAILS:
        raise InvalidAuditRecordError(f"details has more than {MAX_DETAILS} keys")
    for key, value in details.items():
        if not isinstance(key, str) or not _DETAIL_KEY.fullmatch(key):
            raise InvalidAuditRecordError("details keys must be short identifiers like `amount` or `currency`")
        if value is not None and not isinstance(value, bool) and is_denied_key(key):
            raise InvalidAuditRecordError(f"details key {key!r} names personal data or a credential")
        if value is None or isinstance(value, int):  # bool is an int
            continue
        if not isinstance(value, str):
            raise InvalidAuditRecordError(
                f"details[{key!r}] must be str, int, bool or None, not {type(value).__name__}"
            )
        if len(value) > MAX_DETAIL_VALUE_LENGTH or not value.isprintable():
            raise InvalidAuditRecordError(f"details[{key!r}] is too long or has control characters")
        if _has_international_number(value):
            raise InvalidAuditRecordError(f"details[{key!r}] looks like a phone number")
