"""Wave-like checkout sessions and payouts: ``Idempotency-Key`` (same key + same body → the
same resource, another body → 422), statuses processing / succeeded / failed / reversed, and
webhooks signed ``Wave-Signature: t=<unix>,v1=<hex>`` with retries."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from kora.kernel import UnknownCurrency, new_id
from kora.simulator.amounts import BadAmount, format_major, parse_major
from kora.simulator.behaviour import Scenario, decline_code, select_behaviour
from kora.simulator.config import ApiStyle, ProviderConfig
from kora.simulator.engine import SimulatorState
from kora.simulator.records import Operation, Status, iso

_STATUS = {
    Status.PENDING: "processing",
    Status.SUCCEEDED: "succeeded",
    Status.FAILED: "failed",
    Status.REVERSED: "reversed",
}
_EVENTS = {
    ("checkout", "succeeded"): "checkout.session.completed",
    ("checkout", "failed"): "checkout.session.payment_failed",
    ("checkout", "reversed"): "checkout.session.reversed",
    ("payout", "succeeded"): "payout.succeeded",
    ("payout", "failed"): "payout.failed",
    ("payout", "reversed"): "payout.reversed",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def resource(operation: Operation) -> dict[str, Any]:
    status = _STATUS.get(operation.status, "processing")
    body: dict[str, Any] = {
        "id": operation.id,
        "currency": operation.currency,
        "client_reference": operation.external_id,
        "status": status,
        "when_created": iso(operation.created_at),
        "when_completed": iso(operation.finished_at),
    }
    amount = format_major(operation.amount, operation.currency)
    if operation.kind == "checkout":
        body |= {
            "amount": amount,
            "checkout_status": "open" if status == "processing" else "complete",
            "payment_status": status,
            "wave_launch_url": f"https://pay.wave.example/c/{operation.id}",
            "transaction_id": f"T_{operation.id}" if status in ("succeeded", "reversed") else None,
        }
        if operation.status is Status.FAILED:
            body["last_payment_error"] = {"code": operation.reason, "message": "The payment failed."}
    else:
        body |= {
            "receive_amount": amount,
            "fee": format_major(operation.fee, operation.currency),
            "mobile": operation.party,
        }
        if operation.status is Status.FAILED:
            body["payout_error"] = {"error_code": operation.reason, "error_message": "The payout failed."}
    return body


def render(operation: Operation, event: str) -> dict[str, Any]:
    """The webhook event for ``operation`` (copies of one event share its id)."""
    status = _STATUS.get(operation.status, "processing")
    return {
        "id": f"EV_{new_id().hex}",
        "type": _EVENTS.get((operation.kind, status), f"{operation.kind}.{status}"),
        "data": resource(operation),
    }


def _request_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_router(name: str, state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix=f"/{name}/v1", tags=[f"{name} (Wave-like)"])

    def config() -> ProviderConfig:
        provider = state.provider(name)
        assert provider is not None
        return provider

    async def create(request: Request, kind: str) -> Response:
        state.advance()
        provider = config()
        key = request.headers.get("Idempotency-Key")
        if kind == "payout" and not key:
            return _error(400, "missing-idempotency-key", "Payouts need an Idempotency-Key header.")
        if key is not None and not 1 <= len(key) <= 255:
            return _error(400, "invalid-idempotency-key", "The Idempotency-Key is 1 to 255 characters.")
        amount_field, party_field = (
            ("amount", "restrict_payer_mobile") if kind == "checkout" else ("receive_amount", "mobile")
        )
        try:
            body = await request.json()
            currency_code = str(body["currency"])
            if currency_code not in provider.currencies:
                raise UnknownCurrency(currency_code)
            amount = parse_major(body[amount_field], currency_code)
            party = body.get(party_field)
            if kind == "payout" and not party:
                raise KeyError(party_field)
            client_reference = body.get("client_reference")
        except (BadAmount, UnknownCurrency) as exc:
            return _error(400, "request-validation-error", str(exc))
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "request-validation-error", f"{amount_field}, currency and a valid body are required")
        request_hash = _request_hash(body)
        reference = key or f"auto-{new_id().hex}"
        existing = state.ledger.find(name, kind, reference)
        if existing is not None:
            if existing.request_hash != request_hash:
                return _error(422, "idempotency-mismatch", "This Idempotency-Key was used with another request.")
            await state.answer_delay(provider)
            return JSONResponse(resource(existing))
        behaviour = select_behaviour(
            party=str(party) if party else None,
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
            return _error(500, "internal-server-error", "An internal error occurred.")
        existing = state.ledger.find(name, kind, reference)
        if existing is not None:  # a concurrent duplicate got there first
            return (
                JSONResponse(resource(existing))
                if existing.request_hash == request_hash
                else _error(422, "idempotency-mismatch", "This Idempotency-Key was used with another request.")
            )
        prefix = "cos" if kind == "checkout" else "pt"
        operation = Operation(
            id=f"{prefix}-{state.ledger.next_number():08d}{new_id().hex[:8]}",
            provider=name,
            kind=kind,
            reference=reference,
            external_id=str(client_reference) if client_reference is not None else None,
            amount=amount,
            currency=currency_code,
            behaviour=behaviour,
            party=str(party) if party else None,
            created_at=state.clock.now(),
            request_hash=request_hash,
        )
        if kind == "payout":
            operation.fee = provider.fee_for("payout", amount)
        if behaviour.scenario is Scenario.DECLINE and behaviour.decline is not None:
            state.plan(operation, provider, Status.FAILED, decline_code(ApiStyle.WAVE, behaviour.decline))
        elif behaviour.scenario is Scenario.TIMEOUT:
            state.plan(operation, provider, Status.FAILED, "internal-error")
        else:
            state.plan(operation, provider, Status.SUCCEEDED, None)
        if behaviour.scenario in (Scenario.TIMEOUT, Scenario.LATE_SUCCESS):
            await state.hold(provider, operation)
        return JSONResponse(resource(operation))

    async def read(kind: str, operation_id: str) -> Response:
        state.advance()
        operation = state.ledger.get(name, operation_id)
        if operation is None or operation.kind != kind:
            return _error(404, "not-found", "No such resource.")
        await state.answer_delay(config())
        return JSONResponse(resource(operation))

    def search(kind: str, client_reference: str) -> Response:
        state.advance()
        found = [
            resource(op)
            for op in state.ledger.of_provider(name)
            if op.kind == kind and op.external_id == client_reference
        ]
        return JSONResponse({"result": found})

    @router.post("/checkout/sessions")
    async def create_checkout(request: Request) -> Response:
        return await create(request, "checkout")

    @router.get("/checkout/sessions/search")
    async def search_checkouts(client_reference: str) -> Response:
        return search("checkout", client_reference)

    @router.get("/checkout/sessions/{session_id}")
    async def get_checkout(session_id: str) -> Response:
        return await read("checkout", session_id)

    @router.post("/payout")
    async def create_payout(request: Request) -> Response:
        return await create(request, "payout")

    @router.get("/payouts/search")
    async def search_payouts(client_reference: str) -> Response:
        return search("payout", client_reference)

    @router.get("/payout/{payout_id}")
    async def get_payout(payout_id: str) -> Response:
        return await read("payout", payout_id)

    return router
