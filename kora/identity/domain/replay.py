"""Anti-replay of sensitive requests: the rules for a request's timestamp and nonce.

A debit request (transfer, cash-out, refund) carries the Unix time it was made and a nonce
its client never uses twice in one session. The server refuses a timestamp too far from its
own clock, and a nonce the session has already used while that nonce's timestamp could still
be accepted. Pure: the caller passes the time and the window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from kora.identity.domain.errors import IdentityError

NONCE_MIN_LENGTH = 16
NONCE_MAX_LENGTH = 64
# URL-safe base64 without padding, hex, or a UUID in its usual form all fit.
_NONCE = re.compile(rf"[A-Za-z0-9_-]{{{NONCE_MIN_LENGTH},{NONCE_MAX_LENGTH}}}")
# Whole seconds, no sign or fraction; 11 digits reach the year 5138. A 13-digit value is almost
# always milliseconds, which we refuse by name rather than call stale.
_TIMESTAMP = re.compile(r"[0-9]{1,11}")


class ReplayRefused(IdentityError):
    """Base of the refusals of a request's timestamp or nonce. `reason` is a low-cardinality
    word for metrics and logs."""

    reason: ClassVar[str] = "refused"


class RequestNonceMissing(ReplayRefused):
    code = "request_nonce_missing"
    reason = "nonce_missing"
    default_message = "X-Request-Nonce header required: a new random value for every request"


class RequestNonceInvalid(ReplayRefused):
    code = "request_nonce_invalid"
    reason = "nonce_invalid"
    default_message = (
        f"X-Request-Nonce must be {NONCE_MIN_LENGTH} to {NONCE_MAX_LENGTH} characters among A-Z a-z 0-9 _ -"
    )


class RequestTimestampMissing(ReplayRefused):
    code = "request_timestamp_missing"
    reason = "timestamp_missing"
    default_message = "X-Request-Timestamp header required: the Unix time of the request, in seconds"


class RequestTimestampInvalid(ReplayRefused):
    code = "request_timestamp_invalid"
    reason = "timestamp_invalid"
    default_message = "X-Request-Timestamp must be Unix time in whole seconds (digits only, not milliseconds)"


class RequestStale(ReplayRefused):
    """The timestamp is outside the window around the server's clock: an old request played
    again, or a client whose clock is wrong. The message gives the server's time, so an honest
    client can correct its offset."""

    code = "request_stale"
    reason = "stale"
    default_message = "X-Request-Timestamp is too far from the server's clock"

    def __init__(self, *, server_time: int, window_seconds: int) -> None:
        super().__init__(
            f"X-Request-Timestamp must be within {window_seconds} s of the server's clock "
            f"(server Unix time: {server_time}); send the current time with a new nonce"
        )
        self.server_time = server_time


class RequestReplayed(ReplayRefused):
    code = "request_replayed"
    reason = "replayed"
    default_message = (
        "this X-Request-Nonce was already used in this session; a retry needs a new nonce "
        "(and the same Idempotency-Key to get the first answer)"
    )


@dataclass(frozen=True, slots=True)
class RequestFreshness:
    """A request's validated nonce and timestamp (Unix seconds)."""

    nonce: str
    timestamp: int

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


def parse_freshness(*, nonce: str | None, timestamp: str | None) -> RequestFreshness:
    """The nonce and timestamp as sent in the headers, validated for shape only.

    Raises RequestTimestampMissing, RequestTimestampInvalid, RequestNonceMissing,
    RequestNonceInvalid (timestamp first: a client with no clock logic fails the same way
    whatever its nonce)."""
    if timestamp is None or timestamp == "":
        raise RequestTimestampMissing()
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise RequestTimestampInvalid()
    if nonce is None or nonce == "":
        raise RequestNonceMissing()
    if _NONCE.fullmatch(nonce) is None:
        raise RequestNonceInvalid()
    return RequestFreshness(nonce=nonce, timestamp=int(timestamp))


def check_fresh(freshness: RequestFreshness, *, now: datetime, window: timedelta) -> datetime:
    """Refuse a timestamp more than `window` before or after `now` (RequestStale); else return
    until when the nonce must be remembered: the moment its timestamp turns stale, after which
    the timestamp alone refuses a replay."""
    issued_at = freshness.issued_at
    if abs(now - issued_at) > window:
        raise RequestStale(server_time=int(now.timestamp()), window_seconds=int(window.total_seconds()))
    return issued_at + window
