"""RFC 9457 problem+json for the reconciliation API: the one place where its errors become
HTTP statuses. `type` is `urn:kora:problem:<code>` (the core's scheme) and `code` is stable.
A problem never echoes the request's input (it may be a phone number)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from kora.observability.problems import PROBLEM_CONTENT_TYPE, Problem, openapi_problem_responses, problem_json
from kora.reconciliation.adapters.crypto import DecryptionFailed, InvalidReportKey
from kora.reconciliation.adapters.report_queries import InvalidCursor
from kora.reconciliation.domain.parsing import ReportError
from kora.reconciliation.service.importing import Forbidden, ReportNotFound, ReportTooLarge

__all__ = ["PROBLEM_CONTENT_TYPE", "Problem", "ReconProblem", "problem_response", "problem_responses"]


STATUS_BY_CODE: dict[str, tuple[int, str]] = {
    "validation_error": (422, "The request is not valid"),
    "not_authenticated": (401, "Authentication required"),
    "invalid_token": (401, "Invalid or expired token"),
    "forbidden": (403, "Forbidden"),
    "not_found": (404, "Not found"),
    "report_not_found": (404, "No stored report with this id"),
    "method_not_allowed": (405, "Method not allowed"),
    "unknown_provider": (422, "Unknown provider"),
    "report_malformed": (422, "The file is not a report of this provider"),
    "report_missing": (422, "No report in the request"),
    "unsupported_media_type": (415, "Send the report as the raw body or as a multipart file"),
    "payload_too_large": (413, "Request body too large"),
    "invalid_cursor": (400, "Unknown pagination cursor"),
    "report_unreadable": (500, "A stored report cannot be decrypted with the configured keys"),
    "internal_error": (500, "Internal error"),
}


class ReconProblem(Exception):
    """Raised by routes and dependencies: answered as the problem ``code``."""

    def __init__(self, code: str, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail
        self.headers = headers


def problem_response(
    code: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    status, title = STATUS_BY_CODE[code]
    return problem_json(code, status, title, detail, errors=errors, headers=headers)


def problem_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given codes."""
    return openapi_problem_responses(codes, STATUS_BY_CODE)


# Errors of the service layer → (code, detail shown). Details are fixed texts: the exceptions'
# own messages can name the caller's input.
_DOMAIN: dict[type[Exception], tuple[str, str | None]] = {
    ReportError: ("report_malformed", None),
    ReportTooLarge: ("payload_too_large", None),
    ReportNotFound: ("report_not_found", None),
    Forbidden: ("forbidden", "this needs recon_reviewer, recon_approver or admin"),
    InvalidCursor: ("invalid_cursor", "pass the next_cursor of a previous page, unchanged"),
    InvalidReportKey: ("report_unreadable", "quote the correlation id"),
    DecryptionFailed: ("report_unreadable", "quote the correlation id"),
}


def install_problem_handlers(app: FastAPI) -> None:
    """Validation, routing, ReconProblem and the service's errors as problems. Anything else is
    left to ObservabilityMiddleware (logged with its traceback, answered as a 500 problem)."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return problem_response("validation_error", "see `errors`", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "not_authenticated", 403: "forbidden"}.get(
            exc.status_code, "validation_error"
        )
        return problem_response(code, headers=getattr(exc, "headers", None))

    @app.exception_handler(ReconProblem)
    async def _problem(_request: Request, exc: ReconProblem) -> JSONResponse:
        return problem_response(exc.code, exc.detail, headers=exc.headers)

    async def _domain(_request: Request, exc: Exception) -> JSONResponse:
        code, detail = next(v for t, v in _DOMAIN.items() if isinstance(exc, t))
        if code == "report_malformed":
            detail = str(exc)  # parse_report's messages are fixed texts (empty, wrong header row)
        elif code == "report_unreadable":
            logger.error("a stored report does not decrypt with the configured keys", error=type(exc).__name__)
        return problem_response(code, detail)

    for error_type in _DOMAIN:
        app.add_exception_handler(error_type, _domain)
