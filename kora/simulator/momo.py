"""MTN-MoMo-like collection and disbursement: the caller's reference in ``X-Reference-Id``,
``202 Accepted`` without a body, then status polling; one callback, never retried."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from kora.kernel import UnknownCurrency
from kora.simulator.amounts import BadAmount, format_major, parse_major
from kora.simulator.behaviour import Scenario, decline_code, select_behaviour
from kora.simulator.config import ApiStyle, ProviderConfig
from kora.simulator.engine import SimulatorState
from kora.simulator.records import Operation, Status

_STATUS = {
    Status.PENDING: "PENDING",
    Status.SUCCEEDED: "SUCCESSFUL",
    Status.FAILED: "FAILED",
    Status.REVERSED: "SUCCESSFUL",  # MoMo shows a reversal as a separate transaction
}
_KINDS = {"requesttopay": ("collection", "payer"), "transfer": ("disbursement", "payee")}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def render(operation: Operation, event: str) -> dict[str, Any]:
    """The status body (also the callback body)."""
    party_field = "payer" if operation.kind == "collection" else "payee"
    body: dict[str, Any] = {
        "amount": format_major(operation.amount, operation.currency),
        "currency": operation.currency,
        "externalId": operation.external_id,
        party_field: {"partyIdType": "MSISDN", "partyId": operation.party},
        "status": _STATUS.get(operation.status, "PENDING"),
    }
    if operation.status in (Status.SUCCEEDED, Status.REVERSED):
        body["financialTransactionId"] = operation.id
    if operation.status is Status.FAILED and operation.reason:
        body["reason"] = operation.reason
    return body


def build_router(name: str, state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix=f"/{name}", tags=[f"{name} (MoMo-like)"])

    def config() -> ProviderConfig:
        provider = state.provider(name)
        assert provider is not None
        return provider

    async def create(request: Request, resource: str, product: str) -> Response:
        state.advance()
        kind, party_field = _KINDS[resource]
        provider = config()
        reference = request.headers.get("X-Reference-Id", "")
        try:
            uuid.UUID(reference)
        except ValueError:
            return _error(400, "INVALID_REFERENCE_ID", "X-Reference-Id must be a UUID")
        try:
            body = await request.json()
            currency_code = str(body["currency"])
            if currency_code not in provider.currencies:
                raise UnknownCurrency(currency_code)
            amount = parse_major(body["amount"], currency_code)
            party = body[party_field]
            if party.get("partyIdType") != "MSISDN" or not str(party.get("partyId", "")).isdigit():
                raise ValueError("partyIdType must be MSISDN with a numeric partyId")
            party_id = str(party["partyId"])
            external_id = str(body.get("externalId", ""))
        except (BadAmount, UnknownCurrency) as exc:
            return _error(400, "INVALID_AMOUNT_OR_CURRENCY", str(exc))
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "BAD_REQUEST", f"a valid body with amount, currency and {party_field} is required")
        if state.ledger.find(name, kind, reference) is not None:
            return _error(409, "RESOURCE_ALREADY_EXIST", "Duplicated reference id. Creation of resource failed.")
        behaviour = select_behaviour(
            party=party_id,
            amount=amount,
            reference=reference,
            seed=state.config.seed,
            mix=provider.mix,
            amount_rules=provider.amount_rules,
        )
        await state.answer_delay(provider)
        if behaviour.scenario is Scenario.TIMEOUT_UNRECORDED:
            state.ledger.unrecorded.append(
                {"provider": name, "kind": kind, "reference": reference, "at": state.clock.now()}
            )
            await state.hold(provider, None)
            return _error(500, "INTERNAL_PROCESSING_ERROR", "An internal error occurred while processing.")
        if state.ledger.find(name, kind, reference) is not None:  # a concurrent duplicate won
            return _error(409, "RESOURCE_ALREADY_EXIST", "Duplicated reference id. Creation of resource failed.")
        operation = Operation(
            id=str(1_000_000_000 + state.ledger.next_number()),
            provider=name,
            kind=kind,
            reference=reference,
            external_id=external_id,
            amount=amount,
            currency=currency_code,
            behaviour=behaviour,
            party=party_id,
            created_at=state.clock.now(),
            callback_url=request.headers.get("X-Callback-Url"),
        )
        operation.extra["product"] = product
        if behaviour.scenario is Scenario.DECLINE and behaviour.decline is not None:
            reason = decline_code(ApiStyle.MOMO, behaviour.decline, payee=kind == "disbursement")
            state.plan(operation, provider, Status.FAILED, reason)
        elif behaviour.scenario is Scenario.TIMEOUT:
            state.plan(operation, provider, Status.FAILED, "INTERNAL_PROCESSING_ERROR")
        else:
            state.plan(operation, provider, Status.SUCCEEDED, None)
        if behaviour.scenario in (Scenario.TIMEOUT, Scenario.LATE_SUCCESS):
            await state.hold(provider, operation)
        return Response(status_code=202)

    async def status(resource: str, reference: str) -> Response:
        state.advance()
        kind, _ = _KINDS[resource]
        operation = state.ledger.find(name, kind, reference)
        if operation is None:
            return _error(404, "RESOURCE_NOT_FOUND", "Requested resource was not found.")
        await state.answer_delay(config())
        return JSONResponse(render(operation, "status"))

    @router.post("/collection/v1_0/requesttopay", status_code=202)
    async def request_to_pay(request: Request) -> Response:
        return await create(request, "requesttopay", "collection")

    @router.get("/collection/v1_0/requesttopay/{reference_id}")
    async def request_to_pay_status(reference_id: str) -> Response:
        return await status("requesttopay", reference_id)

    @router.post("/disbursement/v1_0/transfer", status_code=202)
    async def transfer(request: Request) -> Response:
        return await create(request, "transfer", "disbursement")

    @router.get("/disbursement/v1_0/transfer/{reference_id}")
    async def transfer_status(reference_id: str) -> Response:
        return await status("transfer", reference_id)

    return router
