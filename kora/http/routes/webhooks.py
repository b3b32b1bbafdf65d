"""Provider webhooks: `POST /v1/webhooks/{provider}`, one route for every provider, each handled
in its own style (see kora/providers/webhooks.py): Wave-style events must carry a valid
signature; MoMo-style callbacks are unsigned and only prompt a status query.

No bearer token (providers call it). Refusals are problem+json and change nothing; a delivery
that is kept is answered 200, including a duplicate or a replay of an event already applied
(acknowledged without effect, so an honest provider stops re-sending it).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kora.http.container import services
from kora.http.problems import problem_response, problem_responses
from kora.providers.webhooks import Rejection, UnknownWebhookSource, WebhookRejected

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

MAX_BODY_BYTES = 64 * 1024  # provider events are a few hundred bytes
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")  # ASCII digits: str.isdigit() also takes "²"


@router.post(
    "/{provider}",
    responses={
        200: {
            "description": "Received. `status` says what it did for signed events: `applied`, "
            "`pending`, `duplicate`, `replayed`, `unknown_payment` or `ignored`; callbacks "
            "(hints) answer `received`.",
            "content": {"application/json": {"example": {"status": "applied"}}},
        },
        **problem_responses(
            "webhook_signature_invalid", "webhook_stale", "webhook_malformed", "payload_too_large", "not_found"
        ),
    },
)
async def receive_webhook(provider: str, request: Request) -> Response:
    """A provider tells Kora what became of a payment. Signed events (`Wave-Signature:
    t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`) must be authentic and at most the tolerance
    window (5 minutes by default) away from our clock; callbacks without a signature are only
    hints: Kora asks that provider's status API and records its answer."""
    inbox = services(request).webhooks
    if provider not in inbox.providers:
        return problem_response("not_found", "no provider of that name sends webhooks here")
    raw = await _read_body(request)
    if isinstance(raw, Response):
        return raw
    try:
        outcome = await inbox.receive(provider, request.headers, raw)
    except UnknownWebhookSource:
        return problem_response("not_found", "no provider of that name sends webhooks here")
    except WebhookRejected as exc:
        return _rejection(exc)
    body: dict[str, Any] = {"status": outcome if inbox.is_signed(provider) else "received"}
    return JSONResponse(body)


@router.post(
    "/acquirers/{acquirer}",
    responses={
        200: {
            "description": "Received. `status`: `applied`, `duplicate`, `replayed`, `unknown_payment`, "
            "`conflict` (flagged for a person, not applied) or `ignored`.",
            "content": {"application/json": {"example": {"status": "applied"}}},
        },
        **problem_responses(
            "webhook_signature_invalid", "webhook_stale", "webhook_malformed", "payload_too_large", "not_found"
        ),
    },
)
async def receive_card_notification(acquirer: str, request: Request) -> Response:
    """A card acquirer's signed notification (`X-Acquirer-Signature: t=<unix>,v1=<hex HMAC-SHA256
    of "t.body">`, at most the tolerance window away from our clock): a chargeback moves its card
    payment to CHARGED_BACK, once."""
    inbox = services(request).card_notifications
    if acquirer not in inbox.acquirers:
        return problem_response("not_found", "no card acquirer of that name sends notifications here")
    raw = await _read_body(request)
    if isinstance(raw, Response):
        return raw
    try:
        outcome = await inbox.receive(acquirer, request.headers, raw)
    except UnknownWebhookSource:
        return problem_response("not_found", "no card acquirer of that name sends notifications here")
    except WebhookRejected as exc:
        return _rejection(exc)
    return JSONResponse({"status": outcome})


async def _read_body(request: Request) -> bytes | Response:
    """The body, or the problem to answer: past MAX_BODY_BYTES it is 413, declared or found while
    reading. Read as it streams, counting: a chunked body declares no length, and nobody is
    authenticated yet to be trusted with memory."""
    too_large = f"a webhook body is at most {MAX_BODY_BYTES} bytes"
    declared = request.headers.get("content-length")
    if declared is not None:
        if _CONTENT_LENGTH.fullmatch(declared) is None:
            return problem_response("webhook_malformed", "Content-Length is not a number")
        if int(declared) > MAX_BODY_BYTES:
            return problem_response("payload_too_large", too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return problem_response("payload_too_large", too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _rejection(exc: WebhookRejected) -> JSONResponse:
    if exc.reason is Rejection.MALFORMED_EVENT:
        return problem_response("webhook_malformed", "the body is not an event this provider sends")
    if exc.out_of_window:
        return problem_response("webhook_stale", "the signature's timestamp is outside the tolerance window")
    return problem_response("webhook_signature_invalid", "the signature is missing, malformed or not valid")
