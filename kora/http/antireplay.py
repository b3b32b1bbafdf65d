"""Anti-replay for sensitive routes (ADR 0012): the `X-Request-Timestamp` and `X-Request-Nonce`
headers, checked once the caller is authenticated and before the route runs (so before its
Idempotency-Key is looked at).

On a route that debits a wallet or a merchant account, add one line to the decorator:

    @router.post(..., dependencies=[FreshRequestRequired], responses=with_anti_replay_errors(ERRORS))

`FreshRequestAccepted` checks the headers only when the client sends them (cash-in: it debits
no account of ours, so a replay of it cannot take money out; see the ADR).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from loguru import logger

from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.security import current_principal
from kora.identity import Principal, ReplayRefused, RequestReplayed
from kora.observability import get_correlation_id

TIMESTAMP_HEADER = "X-Request-Timestamp"
NONCE_HEADER = "X-Request-Nonce"

TimestampHeader = Annotated[
    str | None,
    Header(
        alias=TIMESTAMP_HEADER,
        description="Required on transfers, cash-outs and refunds: the Unix time of the request, in whole "
        "seconds. Refused (`request_stale`) when more than KORA_REPLAY_WINDOW_SECONDS (300) from the "
        "server's clock.",
        examples=["1767268800"],
    ),
]
NonceHeader = Annotated[
    str | None,
    Header(
        alias=NONCE_HEADER,
        description="Required with X-Request-Timestamp: a new random value for every request, 16 to 64 "
        "characters among A-Z a-z 0-9 _ - (e.g. 16 random bytes in hex). A nonce already used in this "
        "session is refused (`request_replayed`); a retry sends a new one with the same Idempotency-Key.",
        examples=["4f9c2a7e0b1d4c6f8a3e5b7d9c1f2a4e"],
    ),
]

ANTI_REPLAY_CODES = (
    "request_timestamp_missing",
    "request_timestamp_invalid",
    "request_nonce_missing",
    "request_nonce_invalid",
    "request_stale",
    "request_replayed",
)


async def _consume(request: Request, principal: Principal, timestamp: str | None, nonce: str | None) -> None:
    kora = services(request)
    try:
        await kora.identity.consume_request_nonce(
            principal, nonce=nonce, timestamp=timestamp, correlation_id=get_correlation_id()
        )
    except ReplayRefused as refused:
        kora.metrics.replay_refused(refused.reason)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        # A replay is a security signal; a missing or stale header is usually a client bug or
        # a wrong clock. Never the nonce, the token or the device id: the session id is enough.
        log = logger.warning if isinstance(refused, RequestReplayed) else logger.info
        log(
            "request refused by the anti-replay check",
            reason=refused.reason,
            route=route,
            session_id=str(principal.session_id),
        )
        raise


async def require_fresh_request(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    timestamp: TimestampHeader = None,
    nonce: NonceHeader = None,
) -> None:
    """Both headers are required, fresh and new to the session. Raises a ReplayRefused."""
    await _consume(request, principal, timestamp, nonce)


async def accept_fresh_request(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    timestamp: TimestampHeader = None,
    nonce: NonceHeader = None,
) -> None:
    """Without either header the request passes; with one or both, they are checked as on a
    route that requires them (so a client may send them on every POST)."""
    if timestamp is None and nonce is None:
        return
    await _consume(request, principal, timestamp, nonce)


FreshRequestRequired = Depends(require_fresh_request)
FreshRequestAccepted = Depends(accept_fresh_request)


def with_anti_replay_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A copy of a route's OpenAPI `responses=` with the anti-replay problem codes added (their
    descriptions appended to a status already listed)."""
    merged = copy.deepcopy(responses)
    for status, entry in problem_responses(*ANTI_REPLAY_CODES).items():
        if status in merged:
            existing = merged[status]
            existing["description"] = "; ".join(d for d in (existing.get("description"), entry["description"]) if d)
        else:
            merged[status] = entry
    return merged
