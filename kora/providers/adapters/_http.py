"""What the HTTP provider adapters (MoMo, Wave, card acquirer) share: the tracing headers every
call carries, how a transport-level status becomes a classified provider error, and how a
guarded create or status query becomes the provider port's answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from kora.observability import inject_context
from kora.providers.ports import STATUS_UNREACHABLE, ProviderOperation, ProviderOutcome, ProviderResult
from kora.providers.resilience import (
    ProviderDeclined,
    ProviderError,
    ProviderGuard,
    ProviderTimeout,
    ProviderUnavailable,
    classify_http_status,
)


def traced_headers(correlation_id: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus our correlation id and the W3C trace context, so the provider's logs and
    ours can be joined."""
    headers = {} if headers is None else headers
    if correlation_id:
        headers["X-Correlation-ID"] = correlation_id
    inject_context(headers)
    return headers


def raise_for_transport(response: httpx.Response, *, provider: str) -> None:
    """Raise the classified error for a status that says nothing about the request itself
    (429, 5xx...); any other non-2xx left here is an outcome we cannot read: a timeout."""
    error = classify_http_status(response.status_code, provider=provider)
    if error is not None:
        raise error
    if response.status_code >= 300:
        raise ProviderTimeout(f"unexpected_status_{response.status_code}", provider=provider)


def create_not_settled(exc: ProviderDeclined | ProviderUnavailable | ProviderTimeout) -> ProviderResult:
    """A create that ended in a classified error, as the port's answer: a refusal or an
    unavailable provider is FAILED (certainly not accepted); a timeout is PENDING (it may
    have been taken)."""
    if isinstance(exc, ProviderDeclined):
        return ProviderResult(ProviderOutcome.FAILED, failure_code=exc.code, not_accepted=exc.retryable_elsewhere)
    if isinstance(exc, ProviderUnavailable):
        return ProviderResult(
            ProviderOutcome.FAILED, failure_code=f"provider_unavailable:{exc.reason}", not_accepted=True
        )
    return ProviderResult(ProviderOutcome.PENDING)


async def guarded_status(
    guard: ProviderGuard, operation: ProviderOperation, query: Callable[[], Awaitable[ProviderResult]]
) -> ProviderResult:
    """Run a status query through the guard; a provider that cannot be asked leaves the
    outcome unknown (PENDING ``status_unreachable``), never failed."""
    try:
        return await guard.call(f"{operation.value}.status", query, idempotent_safe=True)
    except ProviderError:
        return ProviderResult(ProviderOutcome.PENDING, failure_code=STATUS_UNREACHABLE)
