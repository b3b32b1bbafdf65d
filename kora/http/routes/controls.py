"""Controlled degradation over HTTP.

- The admin API under `/v1/admin/controls` (admin only): read every switch and route, pause or
  resume an operation, disable or enable a provider for routing — each change audited.
- `operation_open(...)`: the guard the payment routes put first in their `dependencies`, so a
  paused operation (or a disabled provider, or a route with no provider left) is refused with a
  503 problem and Retry-After after authentication but before the anti-replay nonce, the
  Idempotency-Key or any payment is written: a refused request changes nothing.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from kora.http.container import services
from kora.http.problems import problem_responses
from kora.http.security import current_principal, require_role
from kora.identity import Principal, Role
from kora.observability import get_correlation_id
from kora.operations import (
    DEFAULT_RETRY_AFTER_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    PROVIDER_OPERATION,
    REFUSED_NO_PROVIDER,
    ControlChange,
    ControlRequest,
    Operation,
    overview,
)
from kora.providers import NoProviderAvailable

router = APIRouter(prefix="/v1/admin/controls", tags=["admin"])

Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
ProviderName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="A configured provider's name.")]

CONTROL_ERRORS = ("operation_paused", "provider_unavailable")


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=3,
        max_length=200,
        description="Why, for the audit trail and the next on-call engineer (never personal data).",
    )
    incident: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}$", description="The incident reference."
    )
    retry_after_seconds: int = Field(
        default=DEFAULT_RETRY_AFTER_SECONDS,
        ge=1,
        le=MAX_RETRY_AFTER_SECONDS,
        description="The Retry-After refused clients are given.",
    )


class ControlOut(BaseModel):
    reason: str
    incident: str | None
    retry_after_seconds: int
    set_by: str
    set_at: str


class OperationControlOut(BaseModel):
    operation: str
    paused: bool
    reason: str | None = None
    incident: str | None = None
    retry_after_seconds: int | None = None
    set_by: str | None = None
    set_at: str | None = None


class ProviderControlOut(BaseModel):
    provider: str
    configured: bool
    disabled: bool
    reason: str | None = None
    incident: str | None = None
    retry_after_seconds: int | None = None
    set_by: str | None = None
    set_at: str | None = None


class RouteOut(BaseModel):
    operation: str = Field(description="The provider operation: collect (cash-in) or disburse (cash-out).")
    currency: str = Field(description="`*`: the route of the currencies without one of their own.")
    configured: list[str]
    effective: list[str] = Field(description="What routing uses now; empty: requests are refused with 503.")


class ControlsOut(BaseModel):
    operations: list[OperationControlOut]
    providers: list[ProviderControlOut]
    routes: list[RouteOut]
    cache_ttl_seconds: float = Field(description="Other processes apply a change within this many seconds.")


class ControlChangeOut(BaseModel):
    kind: str
    target: str
    active: bool = Field(description="Whether the switch is on now (paused / disabled).")
    changed: bool = Field(description="false when the switch already was in that state (nothing changed).")
    control: ControlOut | None


ADMIN_ERRORS = problem_responses("not_authenticated", "forbidden")
CHANGE_ERRORS = problem_responses(
    "validation_error", "invalid_control", "unknown_provider", "not_authenticated", "forbidden"
)


@router.get("", response_model=ControlsOut, responses=ADMIN_ERRORS)
async def list_controls(_admin: Admin, request: Request) -> Any:
    """Every operation and provider with its switch, and every route as configured and as it
    routes now. Read from the database, not this process's cache."""
    kora = services(request)
    snapshot = await kora.controls.refresh()
    view = overview(snapshot, providers=kora.controls.providers, routes=kora.providers.routes())
    return {**view, "cache_ttl_seconds": kora.controls.ttl_seconds}


@router.put("/operations/{operation}", response_model=ControlChangeOut, responses=CHANGE_ERRORS)
async def pause_operation(operation: Operation, body: ControlIn, admin: Admin, request: Request) -> Any:
    """Pause new requests of the operation: they get 503 `operation_paused` with Retry-After
    and change nothing. Payments already under way are still resolved. Setting it again
    replaces the reason. Audited (`ops.operation.paused`)."""
    change = await services(request).controls.pause(operation, _request(body, admin))
    return _change(change)


@router.delete("/operations/{operation}", response_model=ControlChangeOut, responses=CHANGE_ERRORS)
async def resume_operation(operation: Operation, admin: Admin, request: Request) -> Any:
    """Let the operation go ahead again. Audited (`ops.operation.resumed`)."""
    change = await services(request).controls.resume(operation, actor=admin.actor, correlation_id=get_correlation_id())
    return _change(change)


@router.put("/providers/{provider}", response_model=ControlChangeOut, responses=CHANGE_ERRORS)
async def disable_provider(provider: ProviderName, body: ControlIn, admin: Admin, request: Request) -> Any:
    """Take the provider out of routing: new cash-ins/outs go to the next provider of their
    route, or get 503 `provider_unavailable` when none is left. Its pending payments are still
    resolved with it. Audited (`ops.provider.disabled`)."""
    change = await services(request).controls.disable_provider(provider, _request(body, admin))
    return _change(change)


@router.delete("/providers/{provider}", response_model=ControlChangeOut, responses=CHANGE_ERRORS)
async def enable_provider(provider: ProviderName, admin: Admin, request: Request) -> Any:
    """Put the provider back in routing. Audited (`ops.provider.enabled`)."""
    change = await services(request).controls.enable_provider(
        provider, actor=admin.actor, correlation_id=get_correlation_id()
    )
    return _change(change)


def _request(body: ControlIn, admin: Principal) -> ControlRequest:
    return ControlRequest(
        reason=body.reason,
        actor=admin.actor,
        incident=body.incident,
        retry_after_seconds=body.retry_after_seconds,
        correlation_id=get_correlation_id(),
    )


def _change(change: ControlChange) -> dict[str, Any]:
    current = change.current
    return {
        "kind": change.kind.value,
        "target": change.target,
        "active": current is not None,
        "changed": change.changed,
        "control": current.view() if current is not None else None,
    }


# ---------------------------------------------------------------------- the payment routes' guard
def operation_open(operation: Operation, body_model: type[BaseModel] | None = None) -> Any:
    """The dependency a payment route lists first: refuses the request (503, Retry-After) when
    `operation` is paused; for cash-in/out (give the route's `body_model`, with `provider` and
    `currency`), also when the provider the client named is disabled or no provider of the
    route is left. Reads the cached controls: no query while the cache is fresh."""
    return Depends(_guard(operation, body_model))


def _guard(operation: Operation, body_model: type[BaseModel] | None) -> Callable[..., Awaitable[None]]:
    async def check(request: Request, principal: Principal, body: BaseModel | None = None) -> None:
        del principal  # declared so that authentication answers first (401 before 503)
        kora = services(request)
        provider = getattr(body, "provider", None)
        await kora.controls.ensure_open(operation, provider=provider)
        provider_operation = PROVIDER_OPERATION.get(operation)
        if provider_operation is not None and provider is None and body is not None:
            try:
                kora.providers.route(provider_operation, str(getattr(body, "currency", "")))
            except NoProviderAvailable:
                kora.controls.count_refusal(operation, REFUSED_NO_PROVIDER)
                raise

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("principal", keyword, annotation=Annotated[Principal, Depends(current_principal)]),
    ]
    if body_model is not None:
        # The route's own body model under the route's own name: FastAPI validates the one body
        # first and does not call the guard when it is refused (as the anti-replay check does).
        parameters.append(inspect.Parameter("body", keyword, annotation=body_model))
    check.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return check


def with_control_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A copy of a route's OpenAPI `responses=` with the 503 control problems added."""
    merged = copy.deepcopy(responses)
    for status, entry in problem_responses(*CONTROL_ERRORS).items():
        if status in merged:
            existing = merged[status]
            existing["description"] = "; ".join(d for d in (existing.get("description"), entry["description"]) if d)
        else:
            merged[status] = entry
    return merged
