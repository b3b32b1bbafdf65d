"""HttpMomoGateway: the provider port over an MTN-MoMo-style API (collection and disbursement).

Our payment id is the `X-Reference-Id`, which the provider deduplicates on, so a create may be
retried safely (a 409 means "already accepted"). The create answers `202 Accepted`; the outcome
comes from status polling. An outcome still unknown when the call's budget is spent is PENDING —
the sweeper resolves it later through `status()`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from kora.kernel import currency
from kora.providers.adapters._http import create_not_settled, guarded_status, raise_for_transport, traced_headers
from kora.providers.ports import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult
from kora.providers.resilience import ProviderDeclined, ProviderGuard, ProviderTimeout, ProviderUnavailable
from kora.providers.webhooks import MalformedEvent

_PATHS = {
    ProviderOperation.COLLECT: ("collection/v1_0/requesttopay", "payer"),
    ProviderOperation.DISBURSE: ("disbursement/v1_0/transfer", "payee"),
}


def major_units(amount: int, code: str) -> str:
    """MoMo carries amounts as decimal strings in major units ("1500", "12.50")."""
    exponent = currency(code).exponent
    if exponent == 0:
        return str(amount)
    whole, fraction = divmod(amount, 10**exponent)
    return f"{whole}.{fraction:0{exponent}d}"


class HttpMomoGateway:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        client: httpx.AsyncClient,
        guard: ProviderGuard,
        poll_attempts: int = 3,
        poll_interval_seconds: float = 0.2,
        callback_url: str | None = None,
    ) -> None:
        self.name = name
        self._callback_url = callback_url
        self._base = f"{base_url.rstrip('/')}/{name}"
        self._client = client
        self._guard = guard
        self._poll_attempts = poll_attempts
        self._poll_interval = poll_interval_seconds

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        return await self._move(request, ProviderOperation.COLLECT)

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        return await self._move(request, ProviderOperation.DISBURSE)

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        """The provider's answer for our reference; PENDING (`failure_code="not_found"`) while
        it does not know it, PENDING too when it cannot be asked (the answer is unknown)."""
        path, _ = _PATHS[operation]
        url = f"{self._base}/{path}/{request.payment_id}"

        async def query() -> ProviderResult:
            response = await self._client.get(url, headers=self._headers(request))
            if response.status_code == 404:
                # Not (yet) known there: a create may still be landing, or a route may be wrong.
                # Never a failure by itself; the sweeper ends it after the maximum age.
                return ProviderResult(ProviderOutcome.PENDING, failure_code="not_found")
            raise_for_transport(response, provider=self.name)
            return _result(response.json())

        return await guarded_status(self._guard, operation, query)

    async def _move(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        path, party = _PATHS[operation]
        body = {
            "amount": major_units(request.money.amount, request.money.currency),
            "currency": request.money.currency,
            "externalId": str(request.payment_id),
            party: {"partyIdType": "MSISDN", "partyId": request.account_ref.lstrip("+")},
        }

        async def create() -> None:
            headers = self._headers(request)
            if self._callback_url:  # the callback is only a hint: Kora asks the status API (webhooks.py)
                headers["X-Callback-Url"] = self._callback_url
            response = await self._client.post(f"{self._base}/{path}", json=body, headers=headers)
            if response.status_code in (202, 409):  # 409: this reference was accepted before
                return
            if 400 <= response.status_code < 500 and response.status_code != 429:
                raise ProviderDeclined(f"rejected_{response.status_code}", provider=self.name)
            raise_for_transport(response, provider=self.name)

        try:
            await self._guard.call(operation.value, create, idempotent_safe=True)
        except (ProviderDeclined, ProviderUnavailable, ProviderTimeout) as exc:
            return create_not_settled(exc)
        for attempt in range(self._poll_attempts):
            result = await self.status(request, operation)
            if result.outcome is not ProviderOutcome.PENDING:
                return result
            if attempt + 1 < self._poll_attempts:
                await asyncio.sleep(self._poll_interval)
        return ProviderResult(ProviderOutcome.PENDING)

    def _headers(self, request: ProviderRequest) -> dict[str, str]:
        return traced_headers(request.correlation_id, {"X-Reference-Id": str(request.payment_id)})


def _result(body: dict[str, Any]) -> ProviderResult:
    status = str(body.get("status", "PENDING")).upper()
    reference = body.get("financialTransactionId")
    if status == "SUCCESSFUL":
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=str(reference) if reference else None)
    if status == "FAILED":
        return ProviderResult(ProviderOutcome.FAILED, failure_code=str(body.get("reason", "failed")).lower())
    return ProviderResult(ProviderOutcome.PENDING)


def momo_callback_reference(body: Any) -> uuid.UUID:
    """The payment an (unsigned) MoMo callback names: our id, sent as ``externalId``. Only a
    hint of which payment to ask the status API about; nothing else in the body is read."""
    try:
        return uuid.UUID(str(body["externalId"]))
    except (TypeError, KeyError, ValueError):
        raise MalformedEvent("a callback names our payment in externalId") from None
