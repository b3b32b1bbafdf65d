"""HttpCardAcquirer: the card acquirer port over an acquirer's REST API (authorizations,
captures, voids, refunds), and the reader of its signed notifications.

What makes each call safe to repeat, or not:
- authorize: our payment id is the `merchant_reference`, which the acquirer deduplicates on (a
  repeat answers the authorization it already has), so it is retried within the guard's budget.
- capture and void: the acquirer does each at most once per authorization and refuses a repeat
  (409 `authorization_captured` / `authorization_voided`), so a retry can never capture twice; a
  refused repeat is read back from the authorization's status.
- refund: not deduplicated by every acquirer, so never retried: an ambiguous refund is PENDING
  and the payments module resolves it from the authorization's refunded total.
Every call also carries `Idempotency-Key` (our payment or refund id) for acquirers that honour it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NoReturn

import httpx

from kora.kernel import Money
from kora.providers.adapters._http import raise_for_transport, traced_headers
from kora.providers.card import (
    ACQUIRER_UNAVAILABLE,
    AMOUNT_TOO_LARGE,
    AUTHORIZATION_CAPTURED,
    AUTHORIZATION_DECLINED,
    AUTHORIZATION_EXPIRED,
    AUTHORIZATION_NOT_FOUND,
    AUTHORIZATION_VOIDED,
    CARD_DECLINED,
    DECLINE_CODES,
    NOT_CAPTURED,
    AuthorizationState,
    AuthorizationStatus,
    CardAuthorizationRequest,
    CardNotification,
    CardOutcome,
    CardResult,
    Chargeback,
)
from kora.providers.resilience import (
    ProviderDeclined,
    ProviderError,
    ProviderGuard,
    ProviderTimeout,
    ProviderUnavailable,
)

CARD_SIGNATURE_HEADER = "X-Acquirer-Signature"

# The acquirer's 409 codes → our words.
_CONFLICTS = {
    "authorization_captured": AUTHORIZATION_CAPTURED,
    "authorization_voided": AUTHORIZATION_VOIDED,
    "authorization_expired": AUTHORIZATION_EXPIRED,
    "authorization_declined": AUTHORIZATION_DECLINED,
    "not_captured": NOT_CAPTURED,
}
_STATES = {state.value: state for state in AuthorizationState}


class HttpCardAcquirer:
    def __init__(self, name: str, base_url: str, *, client: httpx.AsyncClient, guard: ProviderGuard) -> None:
        self.name = name
        self._base = f"{base_url.rstrip('/')}/{name}/v1"
        self._client = client
        self._guard = guard

    # ----------------------------------------------------------------- operations
    async def authorize(self, request: CardAuthorizationRequest) -> CardResult:
        body = {
            "amount": request.money.amount,
            "currency": request.money.currency,
            "card_number": request.card_token,
            "merchant_reference": str(request.payment_id),
        }
        headers = self._headers(request.payment_id, "authorize", request.correlation_id)

        async def create() -> dict[str, Any]:
            response = await self._client.post(f"{self._base}/authorizations", json=body, headers=headers)
            if response.status_code in (200, 201):  # 200: this reference was authorized before
                return _json(response)
            self._refuse(response, invalid=_error_code(response) or "invalid_request")

        outcome = await self._call("authorize", create, idempotent_safe=True)
        if isinstance(outcome, CardResult):
            return outcome
        return _authorization_result(outcome)

    async def capture(
        self, authorization_id: str, money: Money, *, reference: uuid.UUID, correlation_id: str | None
    ) -> CardResult:
        body = {"authorization_id": authorization_id, "amount": money.amount}
        outcome = await self._operation("capture", "captures", body, reference, correlation_id, idempotent_safe=True)
        if isinstance(outcome, CardResult):
            if outcome.failure_code == AUTHORIZATION_CAPTURED:  # captured before (a repeat): read what
                return await self._captured(authorization_id, correlation_id)
            return outcome
        return CardResult(
            CardOutcome.SUCCEEDED,
            authorization_id=authorization_id,
            reference=_text(outcome.get("id")),
            amount=_amount(outcome.get("amount"), money.amount),
        )

    async def void(self, authorization_id: str, *, reference: uuid.UUID, correlation_id: str | None) -> CardResult:
        body = {"authorization_id": authorization_id}
        outcome = await self._operation("void", "voids", body, reference, correlation_id, idempotent_safe=True)
        if isinstance(outcome, CardResult):
            if outcome.failure_code == AUTHORIZATION_VOIDED:  # voided before: the void holds
                return CardResult(CardOutcome.SUCCEEDED, authorization_id=authorization_id)
            return outcome
        return CardResult(CardOutcome.SUCCEEDED, authorization_id=authorization_id, reference=_text(outcome.get("id")))

    async def refund(
        self, authorization_id: str, money: Money, *, reference: uuid.UUID, correlation_id: str | None
    ) -> CardResult:
        body = {"authorization_id": authorization_id, "amount": money.amount}
        # Not retried: an acquirer that does not deduplicate refunds would pay the card twice.
        outcome = await self._operation("refund", "refunds", body, reference, correlation_id, idempotent_safe=False)
        if isinstance(outcome, CardResult):
            return outcome
        return CardResult(
            CardOutcome.SUCCEEDED,
            authorization_id=authorization_id,
            reference=_text(outcome.get("id")),
            amount=_amount(outcome.get("amount"), money.amount),
        )

    async def status(self, authorization_id: str, *, correlation_id: str | None) -> AuthorizationStatus:
        headers = self._headers(None, "status", correlation_id)

        async def read() -> AuthorizationStatus:
            response = await self._client.get(f"{self._base}/authorizations/{authorization_id}", headers=headers)
            if response.status_code == 404:
                return AuthorizationStatus(AuthorizationState.UNKNOWN, authorization_id)
            raise_for_transport(response, provider=self.name)
            return _status(_json(response))

        try:
            return await self._guard.call("status", read, idempotent_safe=True)
        except (ProviderError, ValueError):
            return AuthorizationStatus(AuthorizationState.UNREACHABLE, authorization_id)

    # ----------------------------------------------------------------- plumbing
    async def _operation(
        self,
        operation: str,
        path: str,
        body: dict[str, Any],
        reference: uuid.UUID,
        correlation_id: str | None,
        *,
        idempotent_safe: bool,
    ) -> dict[str, Any] | CardResult:
        headers = self._headers(reference, operation, correlation_id)

        async def post() -> dict[str, Any]:
            response = await self._client.post(f"{self._base}/{path}", json=body, headers=headers)
            if response.status_code in (200, 201):
                return _json(response)
            self._refuse(response, invalid="invalid_request")

        return await self._call(operation, post, idempotent_safe=idempotent_safe)

    async def _call(
        self, operation: str, fn: Callable[[], Awaitable[dict[str, Any]]], *, idempotent_safe: bool
    ) -> dict[str, Any] | CardResult:
        """`fn`'s decoded answer, or the CardResult that says why there is none."""
        try:
            return await self._guard.call(operation, fn, idempotent_safe=idempotent_safe)
        except ProviderDeclined as exc:
            return CardResult(CardOutcome.FAILED, failure_code=exc.code)
        except ProviderUnavailable as exc:  # certainly not accepted
            return CardResult(
                CardOutcome.FAILED, failure_code=f"{ACQUIRER_UNAVAILABLE}:{exc.reason}", not_accepted=True
            )
        except (ProviderTimeout, ValueError):  # sent, answer unknown or unreadable: never guessed
            return CardResult(CardOutcome.PENDING)

    async def _captured(self, authorization_id: str, correlation_id: str | None) -> CardResult:
        status = await self.status(authorization_id, correlation_id=correlation_id)
        if status.state is AuthorizationState.CAPTURED and status.captured_amount > 0:
            return CardResult(CardOutcome.SUCCEEDED, authorization_id=authorization_id, amount=status.captured_amount)
        return CardResult(CardOutcome.PENDING, authorization_id=authorization_id)

    def _refuse(self, response: httpx.Response, *, invalid: str) -> NoReturn:
        """Raise what a non-2xx answer means: a definitive refusal (4xx) or a transport error."""
        code = _error_code(response)
        if response.status_code == 409:
            raise ProviderDeclined(_CONFLICTS.get(code or "", f"conflict_{code or 'unknown'}"), provider=self.name)
        if response.status_code == 422:
            raise ProviderDeclined(
                AMOUNT_TOO_LARGE if code == "amount_too_large" else "rejected_422", provider=self.name
            )
        if response.status_code == 404:
            raise ProviderDeclined(AUTHORIZATION_NOT_FOUND, provider=self.name)
        if response.status_code == 400:
            raise ProviderDeclined(invalid if invalid in DECLINE_CODES else "invalid_request", provider=self.name)
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise ProviderDeclined(f"rejected_{response.status_code}", provider=self.name)
        raise_for_transport(response, provider=self.name)
        raise ProviderTimeout(f"unexpected_status_{response.status_code}", provider=self.name)

    def _headers(self, reference: uuid.UUID | None, operation: str, correlation_id: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if reference is not None:
            headers["Idempotency-Key"] = f"{reference}:{operation}"
        return traced_headers(correlation_id, headers)


def _json(response: httpx.Response) -> dict[str, Any]:
    body = response.json()  # a ValueError (unreadable) is an unknown outcome for the caller
    if not isinstance(body, dict):
        raise ValueError("the acquirer answered something other than an object")
    return body


def _error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error", {})
        code = error.get("code") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        return None
    return str(code) if code else None


def _text(value: Any) -> str | None:
    return str(value)[:128] if value else None


def _amount(value: Any, fallback: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else fallback


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _decline(code: Any) -> str:
    return str(code) if str(code) in DECLINE_CODES else CARD_DECLINED


def _authorization_result(body: dict[str, Any]) -> CardResult:
    status = str(body.get("status", ""))
    authorization_id = _text(body.get("id"))
    if status == "authorized" and authorization_id:
        return CardResult(
            CardOutcome.SUCCEEDED, authorization_id=authorization_id, expires_at=_when(body.get("expires_at"))
        )
    if status == "declined":
        return CardResult(
            CardOutcome.FAILED, authorization_id=authorization_id, failure_code=_decline(body.get("decline_code"))
        )
    return CardResult(CardOutcome.PENDING, authorization_id=authorization_id)  # a state we cannot read: never guessed


def _status(body: dict[str, Any]) -> AuthorizationStatus:
    def number(key: str) -> int:
        value = body.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    state = _STATES.get(str(body.get("status", "")), AuthorizationState.UNREACHABLE)
    if state in (AuthorizationState.UNKNOWN, AuthorizationState.UNREACHABLE):
        state = AuthorizationState.UNREACHABLE  # an answer we cannot read says nothing
    return AuthorizationStatus(
        state,
        _text(body.get("id")),
        amount=number("amount"),
        captured_amount=number("captured_amount"),
        refunded_amount=number("refunded_amount"),
        chargeback_amount=number("chargeback_amount"),
        expires_at=_when(body.get("expires_at")),
        decline_code=_decline(body.get("decline_code")) if state is AuthorizationState.DECLINED else None,
    )


def parse_card_notification(body: Any) -> CardNotification:
    """The acquirer's event (`{"id", "type", "data": {...}}`) in our words. Only
    `chargeback.created` is acted on; a body of another shape raises ValueError."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ValueError("not an acquirer event")
    event_id, kind, data = str(body.get("id") or ""), str(body.get("type") or ""), body["data"]
    if kind != "chargeback.created":
        return CardNotification(event_id, kind, None)
    amount, currency, authorization_id = data.get("amount"), data.get("currency"), data.get("authorization_id")
    if not (isinstance(amount, int) and not isinstance(amount, bool) and amount > 0):
        raise ValueError("a chargeback has a positive integer amount")
    if not isinstance(currency, str) or not isinstance(authorization_id, str) or not authorization_id:
        raise ValueError("a chargeback names its authorization and currency")
    try:
        payment_id: uuid.UUID | None = uuid.UUID(str(data.get("merchant_reference")))
    except ValueError:
        payment_id = None  # not one of ours
    reason = str(data.get("reason") or "unspecified")
    if not reason.replace("_", "").isalnum() or len(reason) > 32:
        reason = "other"  # a code, never free text
    return CardNotification(
        event_id, kind, Chargeback(event_id, authorization_id[:128], payment_id, amount, currency, reason.lower())
    )
