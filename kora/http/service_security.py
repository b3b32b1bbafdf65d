"""Service-to-service authentication for the core's service API (ADR 0023).

`require_service_scope("payments:read")` admits a call carrying `Authorization: Bearer <service
token>`: a short-lived EdDSA JWT (`typ` kora-svc+jwt, audience kora-core) the calling service
signed with its own key, registered in KORA_SERVICE_IDENTITIES with the scopes it is granted.
A refusal is a 401 `service_token_invalid` or a 403 `service_scope_missing` problem, logged
with its reason (never the token) and counted in `kora_service_auth_refusals_total`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from loguru import logger
from opentelemetry import trace

from kora.http.container import services
from kora.identity import ServiceCaller, ServiceScopeMissing, ServiceTokenInvalid, validate_scope

service_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ServiceToken",
    description="A service token: an EdDSA JWT (typ kora-svc+jwt, aud kora-core, at most 5 minutes) the "
    "calling service signs with the key registered for it in KORA_SERVICE_IDENTITIES. User access tokens "
    "are refused here.",
)


def require_service_scope(scope: str) -> Callable[..., Awaitable[ServiceCaller]]:
    """A dependency admitting a service whose token carries `scope` (checked for shape when the
    route is declared)."""
    validate_scope(scope)

    async def service_caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(service_bearer)],
    ) -> ServiceCaller:
        kora = services(request)
        token = credentials.credentials if credentials is not None else None
        try:
            caller = kora.service_auth.authenticate(token, scope)
        except (ServiceTokenInvalid, ServiceScopeMissing) as exc:
            service = kora.service_metrics.service_label(exc.service)
            kora.service_metrics.refused(exc.reason, service)
            logger.warning(
                "service call refused",
                reason=exc.reason,
                caller_service=service,
                scope=scope,
                code=exc.code,
            )
            raise
        span = trace.get_current_span()
        span.set_attribute("kora.service", caller.service)
        span.set_attribute("kora.service.scope", scope)
        return caller

    return service_caller
