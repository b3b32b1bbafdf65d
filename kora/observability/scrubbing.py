"""Redaction of PII and secrets from free text and structured log fields.

Used by the log patcher on every record; exposed so other adapters (audit details, error
reports) can reuse the same rules. The rules err on the side of redacting: a stray amount
that looks like a phone number is an acceptable loss, a leaked phone number is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

REDACTED = "[REDACTED]"

# Each rule runs only when a cheap substring test says it could match: most log lines
# only pay for the phone-number pass. Order matters: key=value runs before the bare bearer
# rule so "Authorization: Bearer x" loses the whole credential, not just the word "Bearer".
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|\Z)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_KV_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "authorization",
    "credential",
    "pin",
    "otp",
    "cvv",
    "pwd",
)
_KV = re.compile(
    r"(?i)(?P<key>(?:password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key|authorization"
    r"|credential)[\w.-]*|\b(?:pin|otp|cvv|pwd)\b)"
    r"(?P<sep>[\"']?\s*[:=]\s*)(?:(?:bearer|basic)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s,;&'\"]+)"
)
_BEARER = re.compile(r"(?i)(?P<scheme>\bbearer\s+)[A-Za-z0-9._~+/=-]{4,}")
_EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Database errors quote the offending values: SQLAlchemy's "[parameters: (...)]" line and
# PostgreSQL's "Key (column)=(value)" detail.
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*\]")
_SQL_KEY_DETAIL = re.compile(r"(Key \([^)]*\)=\()[^)]*(\))")
_PHONE = re.compile(
    # An international number written with separators: +225 07 01 02 03 04, +1-555-123-4567.
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\d){7,14}(?!\d)"
    # A bare run of 8-19 digits standing alone: phone numbers (and card numbers). The
    # look-arounds keep the all-digit groups of UUIDs ("-446655440000") and decimals intact.
    r"|(?<![\w.+-])\+?\d{8,19}(?![\w-])"
)


# Field names whose value is never logged, whatever it looks like. Substrings catch
# "refresh_token", "newPassword", "x_authorization"; whole parts catch "key" in
# "idempotency_key" or "signing_key" without catching "monkey".
_SENSITIVE_KEY_SUBSTRINGS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "cookie",
    "credential",
    "phone",
    "msisdn",
    "display_name",
    "full_name",
    "first_name",
    "last_name",
    "email",
    "signature",
    "card_number",
    "iban",
    "private",
)
_SENSITIVE_KEY_PARTS = frozenset({"key", "pin", "otp", "cvv", "cvc", "pan", "pwd", "jwt", "dob"})
_KEY_PARTS = re.compile(r"[^a-z0-9]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH = 6


def _redact_value(match: re.Match[str]) -> str:
    return match.group("key") + match.group("sep") + REDACTED


def _redact_bearer(match: re.Match[str]) -> str:
    return match.group("scheme") + REDACTED


def scrub(text: str) -> str:
    """``text`` with phone numbers, long digit runs, e-mail addresses, JWTs, bearer tokens,
    PEM blocks, ``password=...``-style values and the values quoted by database errors
    replaced by redaction markers."""
    if "-----BEGIN" in text:
        text = _PEM.sub("[REDACTED:pem]", text)
    if "eyJ" in text:
        text = _JWT.sub("[REDACTED:jwt]", text)
    lowered = text.lower()
    if any(word in lowered for word in _KV_WORDS):
        text = _KV.sub(_redact_value, text)
    if "bearer" in lowered:
        text = _BEARER.sub(_redact_bearer, text)
    if "@" in text:
        text = _EMAIL.sub("[REDACTED:email]", text)
    if "[parameters: " in text:
        text = _SQL_PARAMETERS.sub("[parameters: [REDACTED]]", text)
    if "Key (" in text:
        text = _SQL_KEY_DETAIL.sub(r"\1[REDACTED]\2", text)
    return _PHONE.sub("[REDACTED:number]", text)


@lru_cache(maxsize=2048)
def is_sensitive_key(name: str) -> bool:
    """True when a field called ``name`` must never have its value logged."""
    normalized = _CAMEL_BOUNDARY.sub("_", name).lower()
    if any(word in normalized for word in _SENSITIVE_KEY_SUBSTRINGS):
        return True
    return any(part in _SENSITIVE_KEY_PARTS for part in _KEY_PARTS.split(normalized))


def scrub_value(key: str, value: object, _depth: int = 0) -> object:
    """A log-safe copy of a structured field: redacted entirely when ``key`` is sensitive,
    otherwise strings scrubbed and containers walked. Numbers, booleans and None are kept
    (an ``int`` amount or timestamp is not a phone number); other objects become scrubbed
    strings."""
    if value is None:
        return None
    if is_sensitive_key(key):
        return REDACTED
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if _depth >= _MAX_DEPTH:
        return "[TRUNCATED]"
    if isinstance(value, Mapping):
        return {str(k): scrub_value(str(k), v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(key, item, _depth + 1) for item in value]
    if isinstance(value, bytes | bytearray):
        return f"[{len(value)} bytes]"
    return scrub(str(value))
