"""Admin routes for the event pipeline's dead letters (ADR 0021): list them, re-drive one
through its consumer, or drop it. Every action is recorded in the audit trail."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kora.bootstrap_events import DeadLetterNotOpen, UnknownConsumer
from kora.http.container import services
from kora.http.problems import problem_response, problem_responses
from kora.http.security import require_role
from kora.identity import Principal

router = APIRouter(prefix="/v1/admin/events", tags=["admin"])

Admin = Annotated[Principal, Depends(require_role("admin"))]
CONSUMER_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"


class DropIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=200, description="Why the event is dropped (audited).")


@router.get("/dead-letters", responses=problem_responses("forbidden", "not_authenticated", "validation_error"))
async def list_dead_letters(
    request: Request,
    _admin: Admin,
    consumer: Annotated[str | None, Query(pattern=CONSUMER_PATTERN)] = None,
    status: Literal["open", "retried", "dropped", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Dead letters, oldest first: consumer, reason, detail, deliveries (the event carries no PII)."""
    found = await services(request).events.dead_letters.find(
        consumer=consumer, status=None if status == "all" else status, limit=limit
    )
    return {"items": [letter.view() for letter in found]}


@router.post(
    "/dead-letters/{letter_id}/retry",
    response_model=None,
    responses=problem_responses("forbidden", "not_authenticated", "dead_letter_not_found", "unknown_consumer"),
)
async def retry_dead_letter(request: Request, letter_id: uuid.UUID, admin: Admin) -> Response | dict[str, Any]:
    """Run an open dead letter through its consumer again. `applied` or `duplicate` closes it;
    `dead_lettered` means it failed again and stays open with the new reason."""
    try:
        letter, outcome = await services(request).events.retry_dead_letter(letter_id, actor=_actor(admin))
    except DeadLetterNotOpen:
        return problem_response("dead_letter_not_found")
    except UnknownConsumer as exc:
        return problem_response("unknown_consumer", str(exc))
    return {"id": str(letter.id), "consumer": letter.consumer, "outcome": outcome.word, "detail": outcome.detail}


@router.post(
    "/dead-letters/{letter_id}/drop",
    response_model=None,
    responses=problem_responses("forbidden", "not_authenticated", "dead_letter_not_found", "validation_error"),
)
async def drop_dead_letter(
    request: Request, letter_id: uuid.UUID, body: DropIn, admin: Admin
) -> Response | dict[str, Any]:
    """Close an open dead letter without applying it."""
    try:
        letter = await services(request).events.drop_dead_letter(letter_id, actor=_actor(admin), reason=body.reason)
    except DeadLetterNotOpen:
        return problem_response("dead_letter_not_found")
    return {"id": str(letter.id), "consumer": letter.consumer, "status": "dropped"}


def _actor(principal: Principal) -> str:
    return f"user:{principal.user_id}"
