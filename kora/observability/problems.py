"""RFC 9457 problem details, the shape every Kora HTTP service answers errors with: the
content type, the body (``type`` ``urn:kora:problem:<code>``, a stable ``code``, the correlation
id to quote), the OpenAPI model and ``responses=`` entries. Each service keeps its own table of
codes (status, title); this module only renders them, so the core's API, the reconciliation
API and the middleware's 500 can never disagree on the shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from kora.observability.correlation import get_correlation_id

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, as declared in OpenAPI."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    correlation_id: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_type(code: str) -> str:
    return f"urn:kora:problem:{code}"


def problem_body(
    code: str, status: int, title: str, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "correlation_id": get_correlation_id(),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_json(
    code: str,
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        problem_body(code, status, title, detail, errors=errors),
        status_code=status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=dict(headers) if headers else None,
    )


def openapi_problem_responses(
    codes: tuple[str, ...], table: Mapping[str, tuple[int, str]]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for ``codes``, by status, from a service's code table."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status, title = table[code]
        entry = out.setdefault(status, {"model": Problem, "description": ""})
        entry["description"] = (entry["description"] + "; " if entry["description"] else "") + f"`{code}`: {title}"
        entry.setdefault("content", {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}})
    return out


def declare_problem_schema(app: FastAPI) -> None:
    """Add the ``Problem`` schema to the app's OpenAPI components (the ``responses=`` refer to it)."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("Problem", Problem.model_json_schema())
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
