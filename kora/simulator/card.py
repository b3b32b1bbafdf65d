"""A card acquirer: authorize, capture (partial, once), void, refund (partial, repeated up to
the captured amount), authorization expiry by the Clock, chargeback notifications (webhook
signed like Wave's under ``X-Acquirer-Signature``). Amounts are integer minor units."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kora.kernel import new_id
from kora.simulator.behaviour import Scenario, decline_code, select_behaviour
from kora.simulator.config import ApiStyle, ProviderConfig
from kora.simulator.engine import SimulatorState
from kora.simulator.records import Action, Movement, Operation, Status, iso

_M = TypeVar("_M", bound=BaseModel)
_A = TypeVar("_A", bound="_OnAuthorization")


class AuthorizationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)
    card_number: str = Field(pattern=r"^[0-9]{12,19}$")
    merchant_reference: str = Field(min_length=1, max_length=64)


class _OnAuthorization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authorization_id: str


class CaptureRequest(_OnAuthorization):
    amount: int | None = Field(default=None, gt=0)


class VoidRequest(_OnAuthorization):
    pass


class RefundRequest(_OnAuthorization):
    amount: int = Field(gt=0)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def authorization(operation: Operation) -> dict[str, Any]:
    return {
        "id": operation.id,
        "status": str(operation.status),
        "decline_code": operation.reason if operation.status is Status.DECLINED else None,
        "amount": operation.amount,
        "currency": operation.currency,
        "captured_amount": operation.captured_amount,
        "refunded_amount": operation.refunded_amount,
        "chargeback_amount": operation.chargeback_amount,
        "merchant_reference": operation.external_id,
        "card_last4": (operation.party or "")[-4:],
        "created_at": iso(operation.created_at),
        "expires_at": iso(operation.expires_at),
    }


def render(operation: Operation, event: str) -> dict[str, Any]:
    chargebacks = operation.extra.get("chargebacks", [])
    last = chargebacks[-1] if chargebacks else {"amount": 0, "reason": None}
    return {
        "id": f"evt_{new_id().hex}",
        "type": "chargeback.created" if event == "chargeback" else f"authorization.{event}",
        "data": {
            "authorization_id": operation.id,
            "merchant_reference": operation.external_id,
            "amount": last["amount"],
            "currency": operation.currency,
            "reason": last["reason"],
            "authorization": authorization(operation),
        },
    }


def build_router(name: str, state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix=f"/{name}/v1", tags=[f"{name} (card acquirer)"])

    def config() -> ProviderConfig:
        provider = state.provider(name)
        assert provider is not None
        return provider

    async def body_of(request: Request, model: type[_M]) -> _M | JSONResponse:
        try:
            return model.model_validate(await request.json())
        except (ValidationError, ValueError):
            return _error(400, "invalid_request", "the request body is invalid")

    def find(authorization_id: str) -> Operation | None:
        operation = state.ledger.get(name, authorization_id)
        return operation if operation is not None and operation.kind == "authorization" else None

    async def on_authorization(request: Request, model: type[_A]) -> tuple[_A, Operation] | JSONResponse:
        """The request's body and the authorization it names, or the error to answer."""
        state.advance()
        body = await body_of(request, model)
        if isinstance(body, JSONResponse):
            return body
        operation = find(body.authorization_id)
        if operation is None:
            return _error(404, "not_found", "no such authorization")
        return body, operation

    @router.post("/authorizations", status_code=201)
    async def authorize(request: Request) -> Response:
        state.advance()
        provider = config()
        body = await body_of(request, AuthorizationRequest)
        if isinstance(body, JSONResponse):
            return body
        if body.currency not in provider.currencies:
            return _error(400, "invalid_currency", "currency not supported")
        existing = state.ledger.find(name, "authorization", body.merchant_reference)
        if existing is not None:
            return JSONResponse(authorization(existing), status_code=200)
        behaviour = select_behaviour(
            party=body.card_number,
            amount=body.amount,
            reference=body.merchant_reference,
            seed=state.config.seed,
            mix=provider.mix,
            amount_rules=provider.amount_rules,
        )
        await state.answer_delay(provider)
        if behaviour.scenario is Scenario.TIMEOUT_UNRECORDED:
            state.ledger.unrecorded.append(
                {
                    "provider": name,
                    "kind": "authorization",
                    "reference": body.merchant_reference,
                    "at": state.clock.now(),
                }
            )
            await state.hold(provider, None)
            return _error(502, "issuer_unavailable", "the issuer did not answer")
        now = state.clock.now()
        operation = Operation(
            id=f"auth_{new_id().hex}",
            provider=name,
            kind="authorization",
            reference=body.merchant_reference,
            external_id=body.merchant_reference,
            amount=body.amount,
            currency=body.currency,
            behaviour=behaviour,
            party=body.card_number,
            created_at=now,
        )
        state.record(operation)
        if behaviour.scenario is Scenario.DECLINE and behaviour.decline is not None:
            operation.status, operation.reason = Status.DECLINED, decline_code(ApiStyle.CARD, behaviour.decline)
        elif behaviour.scenario is Scenario.TIMEOUT:
            operation.status, operation.reason = Status.DECLINED, "processing_error"
        else:
            operation.status = Status.AUTHORIZED
            operation.expires_at = now + timedelta(seconds=provider.authorization_ttl_seconds)
            state.ledger.schedule(operation.expires_at, operation.id, Action.EXPIRE)
        operation.finished_at = operation.updated_at = now
        if behaviour.scenario in (Scenario.TIMEOUT, Scenario.LATE_SUCCESS):
            await state.hold(provider, operation)
        return JSONResponse(authorization(operation), status_code=201)

    @router.get("/authorizations/{authorization_id}")
    async def read(authorization_id: str) -> Response:
        state.advance()
        operation = find(authorization_id)
        return (
            JSONResponse(authorization(operation)) if operation else _error(404, "not_found", "no such authorization")
        )

    @router.post("/captures", status_code=201)
    async def capture(request: Request) -> Response:
        found = await on_authorization(request, CaptureRequest)
        if isinstance(found, JSONResponse):
            return found
        body, operation = found
        if operation.status is not Status.AUTHORIZED:
            return _error(409, f"authorization_{operation.status}", f"the authorization is {operation.status}")
        amount = body.amount if body.amount is not None else operation.amount
        if amount > operation.amount:
            return _error(422, "amount_too_large", "cannot capture more than authorized")
        await state.answer_delay(config())
        now = state.clock.now()
        fee = config().fee_for("capture", amount)
        capture_id = f"cap_{new_id().hex}"
        operation.status, operation.captured_amount, operation.fee = Status.CAPTURED, amount, fee
        operation.updated_at = now
        operation.movements.append(Movement(capture_id, operation.id, "capture", "succeeded", amount, fee, now))
        state.metrics.operation_finished(name, "capture", "succeeded")
        if operation.behaviour.scenario is Scenario.CHARGEBACK:
            at = now + timedelta(seconds=config().chargeback_after_seconds)
            state.ledger.schedule(at, operation.id, Action.CHARGEBACK)
        return JSONResponse(
            {"id": capture_id, "authorization_id": operation.id, "amount": amount, "fee": fee, "status": "succeeded"},
            status_code=201,
        )

    @router.post("/voids", status_code=201)
    async def void(request: Request) -> Response:
        found = await on_authorization(request, VoidRequest)
        if isinstance(found, JSONResponse):
            return found
        _, operation = found
        if operation.status is not Status.AUTHORIZED:
            return _error(409, f"authorization_{operation.status}", f"the authorization is {operation.status}")
        await state.answer_delay(config())
        operation.status = Status.VOIDED
        operation.updated_at = state.clock.now()
        state.metrics.operation_finished(name, "authorization", "voided")
        return JSONResponse(
            {"id": f"void_{new_id().hex}", "authorization_id": operation.id, "status": "succeeded"}, status_code=201
        )

    @router.post("/refunds", status_code=201)
    async def refund(request: Request) -> Response:
        found = await on_authorization(request, RefundRequest)
        if isinstance(found, JSONResponse):
            return found
        body, operation = found
        if operation.status is not Status.CAPTURED:
            return _error(409, "not_captured", "only a captured authorization can be refunded")
        refundable = operation.captured_amount - operation.refunded_amount - operation.chargeback_amount
        if body.amount > refundable:
            return _error(422, "amount_too_large", f"at most {refundable} can still be refunded")
        await state.answer_delay(config())
        now = state.clock.now()
        refund_id = f"ref_{new_id().hex}"
        operation.refunded_amount += body.amount
        operation.updated_at = now
        operation.movements.append(Movement(refund_id, operation.id, "refund", "succeeded", -body.amount, 0, now))
        state.metrics.operation_finished(name, "refund", "succeeded")
        return JSONResponse(
            {"id": refund_id, "authorization_id": operation.id, "amount": body.amount, "status": "succeeded"},
            status_code=201,
        )

    return router
