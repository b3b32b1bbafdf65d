"""Webhook signatures, Wave style: ``t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw_body}")>``.

The card acquirer signs the same way under its own header. Receivers verify with
:func:`verify_signature` (constant-time comparison, bounded clock skew).
"""

from __future__ import annotations

import hashlib
import hmac

WAVE_SIGNATURE_HEADER = "Wave-Signature"
CARD_SIGNATURE_HEADER = "X-Acquirer-Signature"


def compute_signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + raw_body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, raw_body: bytes) -> str:
    return f"t={timestamp},v1={compute_signature(secret, timestamp, raw_body)}"


def parse_signature_header(value: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures); ValueError when the header is malformed."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            raise ValueError("malformed signature header")
        if key == "t":
            timestamp = int(item)
        elif key == "v1":
            signatures.append(item)
    if timestamp is None or not signatures:
        raise ValueError("signature header needs t= and v1=")
    return timestamp, signatures


def verify_signature(secret: str, header: str, raw_body: bytes, *, now: int, tolerance_seconds: int = 300) -> bool:
    """True when one v1 signature matches and the timestamp is within ``tolerance_seconds``."""
    try:
        timestamp, signatures = parse_signature_header(header)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = compute_signature(secret, timestamp, raw_body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
