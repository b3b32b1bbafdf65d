"""``/_sim/``: configure behaviour at runtime, read the ground truth, trigger and reset."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from kora.observability import render_metrics
from kora.simulator.config import OutageMode, ProviderPatch
from kora.simulator.engine import SimulatorState
from kora.simulator.records import Status
from kora.simulator.reports import manifest, render_report


class Outage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    down: bool
    mode: OutageMode | None = None


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["succeeded", "failed"]
    reason: str | None = Field(default=None, max_length=64)


class ChargebackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int | None = Field(default=None, gt=0)
    reason: str = Field(default="fraud", max_length=64)


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"code": "not_found", "message": f"no such {what}"}, status_code=404)


def build_router(state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix="/_sim", tags=["simulator admin"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = render_metrics(state.metrics.registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @router.get("/providers")
    async def providers() -> dict[str, Any]:
        return {
            name: provider.model_dump(mode="json", exclude={"webhook_secret"})
            for name, provider in state.config.providers.items()
        }

    @router.patch("/providers/{name}")
    async def configure(name: str, patch: ProviderPatch) -> Response:
        provider = state.provider(name)
        if provider is None:
            return _not_found("provider")
        for field in patch.model_fields_set:
            value = getattr(patch, field)
            if value is not None or field == "webhook_url":  # null clears only the webhook URL
                setattr(provider, field, value)
        return JSONResponse(provider.model_dump(mode="json", exclude={"webhook_secret"}))

    @router.post("/providers/{name}/outage")
    async def outage(name: str, body: Outage) -> Response:
        provider = state.provider(name)
        if provider is None:
            return _not_found("provider")
        provider.down = body.down
        if body.mode is not None:
            provider.outage_mode = body.mode
        return JSONResponse({"provider": name, "down": provider.down, "mode": str(provider.outage_mode)})

    @router.get("/ledger")
    async def ledger(provider: str | None = None, reference: str | None = None) -> dict[str, Any]:
        state.advance()
        operations = [
            op.ground_truth()
            for op in state.ledger.operations.values()
            if (provider is None or op.provider == provider) and (reference is None or op.reference == reference)
        ]
        return {"operations": operations, "unrecorded": len(state.ledger.unrecorded)}

    @router.get("/operations/{operation_id}")
    async def operation(operation_id: str) -> Response:
        state.advance()
        found = state.ledger.operations.get(operation_id)
        return JSONResponse(found.ground_truth()) if found is not None else _not_found("operation")

    @router.post("/operations/{operation_id}/resolve")
    async def resolve(operation_id: str, body: Resolution) -> Response:
        """End a pending (e.g. stuck) operation now."""
        found = state.ledger.operations.get(operation_id)
        if found is None:
            return _not_found("operation")
        if found.status is not Status.PENDING:
            return JSONResponse({"code": "not_pending", "message": "only a pending operation"}, status_code=409)
        state.finish(found, Status(body.status), body.reason)
        return JSONResponse(found.ground_truth())

    @router.post("/operations/{operation_id}/reverse")
    async def reverse(operation_id: str) -> Response:
        found = state.ledger.operations.get(operation_id)
        if found is None:
            return _not_found("operation")
        if found.status is not Status.SUCCEEDED:
            return JSONResponse({"code": "not_succeeded", "message": "only a succeeded operation"}, status_code=409)
        state.reverse(found)
        return JSONResponse(found.ground_truth())

    @router.post("/operations/{operation_id}/chargeback")
    async def chargeback(operation_id: str, body: ChargebackRequest) -> Response:
        found = state.ledger.operations.get(operation_id)
        if found is None or found.kind != "authorization":
            return _not_found("card authorization")
        open_amount = found.captured_amount - found.refunded_amount - found.chargeback_amount
        amount = body.amount if body.amount is not None else open_amount
        if found.status is not Status.CAPTURED or not 0 < amount <= open_amount:
            return JSONResponse(
                {"code": "invalid_chargeback", "message": "needs a capture with that much left"}, status_code=409
            )
        state.chargeback(found, amount, body.reason)
        return JSONResponse(found.ground_truth())

    @router.post("/tick")
    async def tick() -> dict[str, str]:
        state.advance()
        return {"status": "ok"}

    @router.post("/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    @router.get("/providers/{name}/settlement-report")
    async def settlement_report(name: str, date: date) -> Response:
        state.advance()
        provider = state.provider(name)
        if provider is None:
            return _not_found("provider")
        text = render_report(provider.style, state.ledger.of_provider(name), date)
        filename = f"{name}-settlement-{date.isoformat()}.csv"
        return PlainTextResponse(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.get("/providers/{name}/manifest")
    async def report_manifest(name: str, date: date) -> Response:
        state.advance()
        provider = state.provider(name)
        if provider is None:
            return _not_found("provider")
        operations = state.ledger.of_provider(name)
        return JSONResponse(manifest(name, provider.style, operations, date, state.ledger.unrecorded))

    return router
