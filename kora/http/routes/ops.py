"""Operational routes: health, readiness, metrics, and admin ledger verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.security import require_role
from kora.identity import Principal

router = APIRouter()


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(request: Request) -> Response:
    """Readiness: the database answers."""
    if await services(request).database_ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable"}, status_code=503)


@router.get("/metrics", tags=["ops"], include_in_schema=False)
async def metrics(request: Request) -> Response:
    body, content_type = services(request).render_metrics(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get(
    "/v1/admin/ledger/verify",
    tags=["admin"],
    responses=problem_responses("forbidden", "not_authenticated"),
)
async def verify_ledger(
    request: Request, _admin: Annotated[Principal, Depends(require_role("admin"))]
) -> dict[str, Any]:
    """Run every ledger invariant now and return the report."""
    report = await services(request).verify_ledger()
    result: dict[str, Any] = report.as_dict()
    return result
