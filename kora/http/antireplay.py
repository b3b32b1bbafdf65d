"""Anti-replay for sensitive routes (ADR 0012): the `X-Request-Timestamp` and `X-Request-Nonce`
headers, checked once the caller is authenticated and the body is valid, and before the route
runs (so before its Idempotency-Key is looked at).

On a route that debits a wallet or a merchant account, add one line to the decorator, naming
the route's body model (its parameter must be called `body`):

    @router.post(..., dependencies=[fresh_request_required(TransferIn)], responses=with_anti_replay_errors(ERRORS))

The check declares the same `body` parameter as the route, so FastAPI validates the body first
and does not call the check when the body is refused (422): a request refused for its body has
not used its nonce, and the corrected resend may carry the same one. `fresh_request_accepted`
checks the headers only when the client sends them (cash-in: it debits no account of ours, so a
replay of it cannot take money out; see the ADR).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from loguru import logger
from pydantic import BaseModel

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


def fresh_request_required(body_model: type[BaseModel]) -> Any:
    """Both headers are required, fresh and new to the session (raises a ReplayRefused); checked
    once the route's `body` is valid."""
    return Depends(_check_after_body(body_model, required=True))


def fresh_request_accepted(body_model: type[BaseModel]) -> Any:
    """Without either header the request passes; with one or both, they are checked as on a
    route that requires them (so a client may send them on every POST)."""
    return Depends(_check_after_body(body_model, required=False))


def _check_after_body(body_model: type[BaseModel], *, required: bool) -> Callable[..., Awaitable[None]]:
    async def check(
        request: Request, principal: Principal, body: BaseModel, timestamp: str | None, nonce: str | None
    ) -> None:
        del body  # declared only so that FastAPI validates the body before this runs
        if not required and timestamp is None and nonce is None:
            return
        await _consume(request, principal, timestamp, nonce)

    # FastAPI reads parameters from the signature: the body's is the route's own model (same
    # name and type, so FastAPI treats both as the one request body, validated before the check).
    keyword = inspect.Parameter.KEYWORD_ONLY
    check.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", keyword, annotation=Request),
            inspect.Parameter("principal", keyword, annotation=Annotated[Principal, Depends(current_principal)]),
            inspect.Parameter("body", keyword, annotation=body_model),
            inspect.Parameter("timestamp", keyword, annotation=TimestampHeader, default=None),
            inspect.Parameter("nonce", keyword, annotation=NonceHeader, default=None),
        ]
    )
    return check


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
