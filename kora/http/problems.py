"""RFC 9457 problem+json: the one place where domain error codes become HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from kora.observability.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    openapi_problem_responses,
    problem_json,
    problem_type,
)

__all__ = ["PROBLEM_CONTENT_TYPE", "Problem", "problem_response", "problem_responses", "problem_type"]


# Stable error codes → (HTTP status, title). Domain errors carry only the code.
STATUS_BY_CODE: dict[str, tuple[int, str]] = {
    "validation_error": (422, "The request is not valid"),
    "malformed_request": (400, "The request body is not valid JSON"),
    "idempotency_key_missing": (400, "Idempotency-Key header required"),
    "idempotency_key_invalid": (400, "Idempotency-Key header is malformed"),
    "idempotency_key_reused": (422, "Idempotency-Key reused with a different request"),
    "idempotency_request_in_progress": (409, "A request with this Idempotency-Key is in progress"),
    "webhook_signature_invalid": (401, "Webhook signature missing, malformed or not ours"),
    "webhook_stale": (401, "Webhook timestamp outside the tolerance window"),
    "webhook_malformed": (400, "Webhook body is not an event of this provider"),
    "payload_too_large": (413, "Request body too large"),
    "request_timestamp_missing": (400, "X-Request-Timestamp header required"),
    "request_timestamp_invalid": (400, "X-Request-Timestamp header is malformed"),
    "request_nonce_missing": (400, "X-Request-Nonce header required"),
    "request_nonce_invalid": (400, "X-Request-Nonce header is malformed"),
    "request_stale": (400, "X-Request-Timestamp is too far from the server's clock"),
    "request_replayed": (409, "X-Request-Nonce already used in this session"),
    "insufficient_funds": (422, "Insufficient funds"),
    "risk_denied": (422, "Refused by the risk policy"),
    "risk_review_not_found": (404, "No payment with this id is waiting for a risk review"),
    "risk_review_decided": (409, "This payment's risk review is already decided"),
    "recipient_not_found": (422, "Recipient not found"),
    "same_wallet": (422, "A wallet cannot pay itself"),
    "currency_mismatch": (422, "Currency not accepted"),
    "invalid_amount": (422, "Invalid amount"),
    "unknown_provider": (422, "Unknown provider"),
    "invalid_settlement_request": (422, "Invalid settlement request"),
    "ledger_refused": (422, "The ledger refused the posting"),
    "wallet_not_found": (404, "Wallet not found"),
    "payment_not_found": (404, "Payment not found"),
    "not_found": (404, "Not found"),
    "dead_letter_not_found": (404, "No open dead letter with this id"),
    "unknown_consumer": (422, "Unknown event consumer"),
    "invalid_range": (400, "Invalid time range"),
    "method_not_allowed": (405, "Method not allowed"),
    "illegal_transition": (409, "Illegal payment state transition"),
    "invalid_fee": (422, "Invalid fee"),
    "invalid_capture": (422, "Invalid capture amount"),
    "refund_not_allowed": (422, "This payment cannot be refunded by that amount"),
    "invalid_reference": (422, "Invalid merchant reference"),
    "invalid_card_token": (422, "Invalid card token"),
    "card_operation_in_progress": (409, "An operation on this card payment is pending at the acquirer"),
    "card_operation_refused": (422, "The card acquirer refused the operation"),
    "authorization_expired": (409, "The card authorization has expired"),
    "acquirer_unavailable": (503, "The card acquirer is unavailable; retry later"),
    "operation_paused": (503, "This operation is paused by operations; retry later"),
    "provider_unavailable": (503, "No provider is available for this operation right now; retry later"),
    "invalid_control": (422, "Invalid operational control"),
    "invalid_credentials": (401, "Invalid credentials"),
    "not_authenticated": (401, "Authentication required"),
    "invalid_token": (401, "Invalid or expired token"),
    "device_mismatch": (401, "Token not valid for this device"),
    "invalid_refresh_token": (401, "Invalid refresh token"),
    "refresh_token_reused": (401, "Refresh token reused; session revoked"),
    "session_revoked": (401, "Session revoked"),
    "account_locked": (429, "Too many failed attempts; try again later"),
    "too_many_attempts": (429, "Too many attempts; try again later"),
    "rate_limited": (429, "Too many requests"),
    "forbidden": (403, "Forbidden"),
    "phone_number_taken": (409, "Phone number already registered"),
    "weak_password": (422, "Password does not meet the policy"),
    "invalid_phone_number": (422, "Invalid phone number"),
    "invalid_display_name": (422, "Invalid display name"),
    "invalid_device_id": (422, "Invalid device id"),
    "user_not_found": (404, "User not found"),
    "service_token_invalid": (401, "Service token missing, invalid or expired"),
    "service_scope_missing": (403, "The service token lacks the scope this operation needs"),
    "maker_checker_violation": (422, "A correction needs a proposer and a different approver"),
    "invalid_correction": (422, "Invalid correction"),
    "correction_not_applicable": (422, "This correction does not apply to this payment"),
    "correction_already_posted": (409, "This payment already has a correction of this kind"),
    "internal_error": (500, "Internal error"),
    "service_unavailable": (503, "Service unavailable"),
}


def status_for(code: str) -> int:
    return STATUS_BY_CODE.get(code, (422, ""))[0]


def problem_response(
    code: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    status, title = STATUS_BY_CODE.get(code, (422, code.replace("_", " ").capitalize()))
    return problem_json(code, status, title, detail, errors=errors, headers=headers)


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error codes."""
    return openapi_problem_responses(codes, STATUS_BY_CODE)


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    code = "validation_error"
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            code = "malformed_request"
        # Never echo the input back: it may hold a phone number or a password.
        errors.append({"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type")})
    return code, errors


def install_problem_handlers(app: FastAPI, domain_errors: tuple[type[Exception], ...]) -> None:
    """Map validation, routing and domain errors to problems. Unexpected exceptions are left to
    the observability middleware, which logs them and answers a 500 problem."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        code, errors = _validation_errors(exc)
        return problem_response(code, "see `errors`", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated", 403: "forbidden"}.get(
            exc.status_code, "validation_error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(code, detail, headers=getattr(exc, "headers", None))

    async def _domain(_request: Request, exc: Exception) -> JSONResponse:
        code = getattr(exc, "code", None)
        if not (isinstance(code, str) and code in STATUS_BY_CODE):
            logger.opt(exception=exc).error("domain error without a known code")
            return problem_response("internal_error", "an internal error occurred; quote the correlation id")
        headers = None
        retry_after = getattr(exc, "retry_after_seconds", None)
        if isinstance(retry_after, int):
            headers = {"Retry-After": str(retry_after)}
        return problem_response(code, str(exc) or None, headers=headers)

    for error_type in domain_errors:
        app.add_exception_handler(error_type, _domain)
