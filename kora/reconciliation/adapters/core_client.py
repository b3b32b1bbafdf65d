"""`CorePayments` over the core's service API (ADR 0023), with httpx.

Each call carries a service token for just the scope it needs (signed by this service,
`ServiceTokenSigner`), `X-Correlation-ID` (the current one, or a new one) and the W3C trace
context, so the core's spans and logs join this service's trace. Answers are mapped to this
module's exceptions: nothing of httpx leaks to the use cases.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from loguru import logger
from opentelemetry import trace

from kora.kernel import Clock
from kora.observability import CORRELATION_HEADER, get_correlation_id, inject_trace_context, new_correlation_id
from kora.reconciliation.adapters.service_token import ServiceKey, ServiceTokenSigner
from kora.reconciliation.service.ports import CorePayment, Correction, CorrectionRefused, PostedCorrection
from kora.reconciliation.service.settings import ReconSettings

_tracer = trace.get_tracer("kora.reconciliation.core_client")


class CoreError(Exception):
    """The core did not do what was asked. `code` is the core's problem code (or
    `core_unavailable`), `status` its HTTP status (None when it could not be reached)."""

    def __init__(self, code: str, detail: str | None = None, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.status = status


class CoreAuthRefused(CoreError, CorrectionRefused):
    """401/403: the core refused this service's token or scope (a configuration problem: the
    key is not registered, the clocks disagree, the scope is not granted). Never retried."""


class CoreRefused(CoreError, CorrectionRefused):
    """A 4xx the request itself caused (unknown payment, maker-checker, insufficient funds,
    key reused with another body...): retrying the same request gets the same answer."""


class CoreUnavailable(CoreError):
    """The core could not be reached, timed out or answered 5xx: retry later (the correction
    is idempotent by case id, so a retry never posts twice)."""


class CoreClient:
    """The reconciliation service's `CorePayments` port, over HTTP."""

    def __init__(
        self,
        base_url: str,
        signer: ServiceTokenSigner,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds))
        self._timeout = httpx.Timeout(timeout_seconds)

    @classmethod
    def from_settings(
        cls, settings: ReconSettings, *, clock: Clock, client: httpx.AsyncClient | None = None
    ) -> CoreClient:
        """From KORA_RECON_CORE_URL and KORA_RECON_SERVICE_KEY (required in production)."""
        signer = ServiceTokenSigner(
            ServiceKey.from_json(settings.require_service_key()), service=settings.service_name, clock=clock
        )
        return cls(settings.core_url, signer, client=client, timeout_seconds=settings.core_timeout_seconds)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def payment(self, payment_id: str) -> CorePayment | None:
        try:
            body = await self._call("GET", f"/v1/service/payments/{payment_id}", "payments:read", "payment")
        except CoreRefused as exc:
            if exc.status == 404:
                return None
            raise
        return _payment(body)

    async def query_provider(self, payment_id: str) -> CorePayment | None:
        path = f"/v1/service/payments/{payment_id}/provider-query"
        try:
            body = await self._call("POST", path, "payments:query", "provider_query")
        except CoreRefused as exc:
            if exc.status == 404:
                return None
            raise
        return _payment(body)

    async def post_correction(self, correction: Correction) -> PostedCorrection:
        body = {
            "case_id": str(correction.case_id),
            "payment_id": correction.payment_id,
            "kind": correction.kind,
            "amount": correction.amount,
            "currency": correction.currency,
            "reason": correction.reason,
            "proposed_by": correction.proposed_by,
            "approved_by": correction.approved_by,
        }
        answer, replayed = await self._call_with_replay(
            "POST",
            "/v1/service/corrections",
            "ledger:correct",
            "correction",
            json=body,
            headers={"Idempotency-Key": str(correction.case_id)},
        )
        return PostedCorrection(
            case_id=correction.case_id, transaction_id=str(answer["transaction_id"]), replayed=replayed
        )

    async def _call(self, method: str, path: str, scope: str, operation: str) -> dict[str, Any]:
        body, _ = await self._call_with_replay(method, path, scope, operation)
        return body

    async def _call_with_replay(
        self,
        method: str,
        path: str,
        scope: str,
        operation: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        correlation_id = get_correlation_id() or new_correlation_id()
        with _tracer.start_as_current_span(
            f"core.{operation}", kind=trace.SpanKind.CLIENT, attributes={"kora.core.operation": operation}
        ) as span:
            sent = {
                "Authorization": f"Bearer {self._signer.token(scope)}",
                CORRELATION_HEADER: correlation_id,
                "Accept": "application/json",
                **(headers or {}),
            }
            inject_trace_context(sent)  # traceparent: the core's spans join this trace
            started = time.perf_counter()
            try:
                response = await self._client.request(
                    method, self._base + path, json=json, headers=sent, timeout=self._timeout
                )
            except httpx.HTTPError as exc:
                span.set_attribute("kora.core.outcome", "unreachable")
                logger.warning("core unreachable", operation=operation, error=type(exc).__name__)
                raise CoreUnavailable("core_unavailable", type(exc).__name__) from exc
            span.set_attribute("http.response.status_code", response.status_code)
            logger.info(
                "core answered",
                operation=operation,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            if response.is_success:
                return response.json(), response.headers.get("Idempotent-Replayed") == "true"
            raise _error(response)


def _error(response: httpx.Response) -> CoreError:
    code, detail = "core_error", None
    try:
        problem = response.json()
        code = str(problem.get("code") or code)
        detail = problem.get("detail")
    except ValueError:
        pass
    status = response.status_code
    if status >= 500:
        return CoreUnavailable(code if code != "core_error" else "core_unavailable", detail, status=status)
    if status in (401, 403):
        return CoreAuthRefused(code, detail, status=status)
    return CoreRefused(code, detail, status=status)


def _payment(body: dict[str, Any]) -> CorePayment:
    return CorePayment(
        id=str(body["id"]),
        type=str(body["type"]),
        status=str(body["status"]),
        amount=int(body["amount"]),
        currency=str(body["currency"]),
        provider=body.get("provider"),
        provider_ref=body.get("provider_ref"),
    )
