"""Idempotency decisions (the semantics of Stripe's API), as pure rules over a stored record."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kora.payments.domain.model import PaymentError

_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{8,255}$")


class IdempotencyKeyMissing(PaymentError):
    code = "idempotency_key_missing"


class IdempotencyKeyInvalid(PaymentError):
    code = "idempotency_key_invalid"


class IdempotencyKeyReused(PaymentError):
    """Same key, different request."""

    code = "idempotency_key_reused"


class IdempotencyRequestInProgress(PaymentError):
    """A request with this key is still being processed."""

    code = "idempotency_request_in_progress"


def validate_key(key: str | None) -> str:
    if not key:
        raise IdempotencyKeyMissing("the Idempotency-Key header is required for this request")
    if not _KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyInvalid("Idempotency-Key must be 8-255 visible ASCII characters")
    return key


def fingerprint(operation: str, body: dict[str, Any]) -> str:
    """A stable digest of what was asked: same operation and same body ⇒ same fingerprint."""
    canonical = json.dumps({"op": operation, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Outcome(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class IdempotencyRequest:
    scope: str  # the caller: "user:<uuid>"
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    scope: str
    key: str
    fingerprint: str
    outcome: Outcome
    body: dict[str, Any] | None
    payment_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class StoredResult:
    """What a replay returns: the original outcome and body."""

    outcome: Outcome
    body: dict[str, Any]
    replayed: bool


def decide(record: IdempotencyRecord, request: IdempotencyRequest) -> StoredResult:
    """The answer to a request whose key already has a live record."""
    if record.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    if record.outcome is Outcome.IN_FLIGHT or record.body is None:
        raise IdempotencyRequestInProgress("a request with this Idempotency-Key is still in progress")
    return StoredResult(record.outcome, record.body, replayed=True)
