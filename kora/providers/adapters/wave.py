"""HttpWaveGateway: the provider port over a Wave-style API (checkout sessions to collect,
payouts to disburse), and the reader of its signed webhook events.

Our payment id is both the ``Idempotency-Key`` and the ``client_reference``: the provider
answers a repeated create (same key, same body) with the resource it already has, so a create
may be retried safely, and a status query finds the payment by our reference even when the
create's answer was lost. Amounts go out as decimal strings in major units, as Wave sends them.

Statuses: ``processing`` → PENDING, ``succeeded`` → SUCCEEDED, ``failed`` → FAILED with the
provider's error code, ``reversed`` → FAILED with ``failure_code="reversed"``. A reversal comes
after a success: recorded on a payment already captured it contradicts it and the payments
module flags it for a person (never applied silently); on a payment still pending it fails it,
which is the net effect (the money came and went back). Anything else is PENDING: never guessed.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from loguru import logger

from kora.providers.adapters._http import create_not_settled, guarded_status, raise_for_transport, traced_headers
from kora.providers.adapters.momo import major_units
from kora.providers.ports import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult
from kora.providers.resilience import ProviderDeclined, ProviderGuard, ProviderTimeout, ProviderUnavailable
from kora.providers.webhooks import MalformedEvent, ProviderEvent

# operation → (create path, amount field, party field, read path prefix, search path)
_PATHS = {
    ProviderOperation.COLLECT: (
        "checkout/sessions",
        "amount",
        "restrict_payer_mobile",
        "checkout/sessions",
        "checkout/sessions/search",
    ),
    ProviderOperation.DISBURSE: ("payout", "receive_amount", "mobile", "payout", "payouts/search"),
}
IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
REVERSED = "reversed"


class _KeyReusedElsewhere(Exception):
    """422 idempotency-mismatch: the provider holds another request under our payment id."""


class HttpWaveGateway:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        client: httpx.AsyncClient,
        guard: ProviderGuard,
        api_key: str | None = None,
        poll_attempts: int = 3,
        poll_interval_seconds: float = 0.2,
    ) -> None:
        self.name = name
        self._base = f"{base_url.rstrip('/')}/{name}/v1"
        self._client = client
        self._guard = guard
        self._api_key = api_key
        self._poll_attempts = poll_attempts
        self._poll_interval = poll_interval_seconds

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        """Open a checkout session for the customer to pay (cash-in)."""
        return await self._move(request, ProviderOperation.COLLECT)

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        """Send a payout to the customer's Wave account (cash-out)."""
        return await self._move(request, ProviderOperation.DISBURSE)

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        """What the provider has under our reference: PENDING ``not_found`` while it has nothing
        (a create may still be landing; never a failure by itself), PENDING
        ``status_unreachable`` when it cannot be asked."""
        search = _PATHS[operation][4]

        async def query() -> ProviderResult:
            response = await self._client.get(
                f"{self._base}/{search}",
                params={"client_reference": str(request.payment_id)},
                headers=self._headers(request),
            )
            raise_for_transport(response, provider=self.name)
            return self._from_search(request.payment_id, _body(response).get("result"))

        return await guarded_status(self._guard, operation, query)

    async def _move(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        path, amount_field, party_field, read_path, _ = _PATHS[operation]
        # The same payment always sends the same body, so a retry is the same request.
        body = {
            amount_field: major_units(request.money.amount, request.money.currency),
            "currency": request.money.currency,
            party_field: request.account_ref,
            "client_reference": str(request.payment_id),
        }

        async def create() -> dict[str, Any]:
            headers = {**self._headers(request), "Idempotency-Key": str(request.payment_id)}
            response = await self._client.post(f"{self._base}/{path}", json=body, headers=headers)
            if response.status_code in (200, 201):
                return _body(response)
            if response.status_code == 422 and _error_code(response) == "idempotency-mismatch":
                raise _KeyReusedElsewhere
            if 400 <= response.status_code < 500 and response.status_code != 429:
                raise ProviderDeclined(f"rejected_{response.status_code}", provider=self.name)
            raise_for_transport(response, provider=self.name)
            raise ProviderTimeout(f"unexpected_status_{response.status_code}", provider=self.name)

        try:
            resource = await self._guard.call(operation.value, create, idempotent_safe=True)
        except (ProviderDeclined, ProviderUnavailable, ProviderTimeout) as exc:
            return create_not_settled(exc)
        except _KeyReusedElsewhere:
            # Something else already sits under this payment's key and may move money: never
            # called failed. The status query (by our reference) will say what it became.
            logger.error("provider holds another request under this payment's key", provider=self.name)
            return ProviderResult(ProviderOutcome.PENDING, failure_code=IDEMPOTENCY_MISMATCH)
        result = wave_result(resource)
        resource_id = resource.get("id")
        for attempt in range(self._poll_attempts):
            if result.outcome is not ProviderOutcome.PENDING or not isinstance(resource_id, str):
                break
            if attempt:
                await asyncio.sleep(self._poll_interval)
            result = await self._read(request, operation, f"{read_path}/{resource_id}")
        return result

    async def _read(self, request: ProviderRequest, operation: ProviderOperation, path: str) -> ProviderResult:
        async def query() -> ProviderResult:
            response = await self._client.get(f"{self._base}/{path}", headers=self._headers(request))
            if response.status_code == 404:
                return ProviderResult(ProviderOutcome.PENDING, failure_code="not_found")
            raise_for_transport(response, provider=self.name)
            return wave_result(_body(response))

        return await guarded_status(self._guard, operation, query)

    def _from_search(self, payment_id: uuid.UUID, found: Any) -> ProviderResult:
        if not isinstance(found, list):
            raise ProviderTimeout("malformed_answer", provider=self.name)
        results = [wave_result(item) for item in found if isinstance(item, dict)]
        if not results:
            return ProviderResult(ProviderOutcome.PENDING, failure_code="not_found")
        if len(results) > 1:  # our key is our reference, so this should never happen
            logger.error(
                "provider has several requests for one payment", provider=self.name, payment_id=str(payment_id)
            )
        # Money moved if any of them moved it; a failure only counts when nothing else is alive.
        for outcome in (ProviderOutcome.SUCCEEDED, ProviderOutcome.PENDING):
            for result in results:
                if result.outcome is outcome:
                    return result
        return results[0]

    def _headers(self, request: ProviderRequest) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return traced_headers(request.correlation_id, headers)


def wave_result(resource: dict[str, Any]) -> ProviderResult:
    """A checkout session or payout, as the provider port's answer."""
    status = resource.get("status")
    reference = resource.get("id")
    if status == "succeeded":
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=str(reference) if reference else None)
    if status == "failed":
        error = resource.get("last_payment_error") or resource.get("payout_error") or {}
        code = (error.get("code") or error.get("error_code")) if isinstance(error, dict) else None
        return ProviderResult(ProviderOutcome.FAILED, failure_code=_kora_word(code) if code else "failed")
    if status == REVERSED:
        return ProviderResult(
            ProviderOutcome.FAILED, provider_ref=str(reference) if reference else None, failure_code=REVERSED
        )
    return ProviderResult(ProviderOutcome.PENDING)


def parse_wave_event(body: Any) -> ProviderEvent:
    """A Wave webhook event (``{"id", "type", "data": <checkout session or payout>}``); the
    payment is the resource's ``client_reference``. Raises MalformedEvent."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("type"), str):
        raise MalformedEvent("an event needs an id and a type")
    data = body.get("data")
    kind = body["type"]
    if not isinstance(data, dict) or not kind.startswith(("checkout.", "payout.")):
        return ProviderEvent(body["id"], kind, None, None)  # not about a payment: acknowledged, ignored
    try:
        payment_id = uuid.UUID(str(data.get("client_reference")))
    except ValueError:
        return ProviderEvent(body["id"], kind, None, None)  # not one of ours
    return ProviderEvent(body["id"], kind, payment_id, wave_result(data))


def _kora_word(code: str) -> str:
    """``insufficient-funds`` → ``insufficient_funds`` (label- and code-safe)."""
    return str(code).strip().lower().replace("-", "_")[:64]


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):  # a 2xx we cannot read: the request may have been taken
        raise ProviderTimeout("malformed_answer")
    return data


def _error_code(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None
