"""The simulator's state and the rules every provider style shares: latency, holds, final
statuses, reversals, and delivering callbacks/webhooks in the background.

One :class:`SimulatorState` per app (``app.state.simulator``); nothing is global.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from loguru import logger

from kora.kernel import Clock, SystemClock
from kora.observability import CORRELATION_HEADER, get_correlation_id, inject_context
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle, LatencyConfig, LatencyKind, ProviderConfig, SimulatorConfig
from kora.simulator.metrics import SimulatorMetrics
from kora.simulator.records import INFLOW_KINDS, Action, Ledger, Movement, Operation, Status
from kora.simulator.signing import CARD_SIGNATURE_HEADER, WAVE_SIGNATURE_HEADER, signature_header

Renderer = Callable[[Operation, str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Notification:
    """What a style sends when an operation changes: to whom, signed how, retried or not."""

    url: str
    body: dict[str, Any]
    signature_header: str | None
    retries: int


class SimulatorState:
    def __init__(self, config: SimulatorConfig, clock: Clock | None = None) -> None:
        self.config = config.model_copy(deep=True)
        self._initial = config.model_copy(deep=True)
        self.clock: Clock = clock or SystemClock()
        self.ledger = Ledger()
        self.metrics = SimulatorMetrics()
        self._rng = random.Random(config.seed)  # noqa: S311 (latency draws, not security)
        self._renderers: dict[ApiStyle, Renderer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    # configuration ------------------------------------------------------------------------
    def provider(self, name: str) -> ProviderConfig | None:
        return self.config.providers.get(name)

    def register_renderer(self, style: ApiStyle, renderer: Renderer) -> None:
        self._renderers[style] = renderer

    def reset(self) -> None:
        """Forget every operation and restore the configuration the app was built with."""
        self.ledger.reset()
        self.config = self._initial.model_copy(deep=True)
        self._rng = random.Random(self.config.seed)  # noqa: S311

    # time ---------------------------------------------------------------------------------
    def sample_ms(self, latency: LatencyConfig) -> float:
        low, high = latency.min_ms, latency.max_ms
        if latency.kind is LatencyKind.FIXED or high == low:
            return float(low)
        if latency.kind is LatencyKind.UNIFORM:
            return self._rng.uniform(low, high)
        median = math.sqrt(max(low, 1) * high)
        return min(max(self._rng.lognormvariate(math.log(median), 0.5), low), high)

    async def answer_delay(self, provider: ProviderConfig) -> None:
        delay = self.sample_ms(provider.latency) / 1000
        if delay > 0:
            await asyncio.sleep(delay)

    async def hold(self, provider: ProviderConfig, operation: Operation | None) -> None:
        """Hold the answer past the caller's timeout (timeout and late-success scenarios)."""
        if operation is not None:
            operation.answered_late = True
        await asyncio.sleep(provider.hold_seconds)

    def processing_delay(self, provider: ProviderConfig) -> timedelta:
        return timedelta(milliseconds=self.sample_ms(provider.processing))

    # lifecycle ----------------------------------------------------------------------------
    def record(self, operation: Operation) -> None:
        """Add ``operation`` to the ground truth as it is now."""
        operation.extra["trace_headers"] = _trace_headers()
        operation.updated_at = operation.created_at
        self.ledger.add(operation)
        self.metrics.operation_recorded(operation.provider, operation.kind, operation.behaviour.scenario)

    def plan(self, operation: Operation, provider: ProviderConfig, status: Status, reason: str | None) -> None:
        """Record ``operation`` now and schedule its final status after the processing delay
        (at once for late successes: they are done by the time the answer is sent)."""
        self.record(operation)
        if operation.behaviour.scenario is Scenario.STUCK_PENDING:
            return
        operation.planned_status, operation.planned_reason = status, reason
        delay = (
            timedelta(0) if operation.behaviour.scenario is Scenario.LATE_SUCCESS else self.processing_delay(provider)
        )
        self.ledger.schedule(operation.created_at + delay, operation.id, Action.FINISH)
        if delay == timedelta(0):
            self.advance()

    def advance(self) -> None:
        """Apply every transition due by the clock's now (called per request and by a ticker)."""
        now = self.clock.now()
        for due in self.ledger.pop_due(now):
            operation = self.ledger.operations.get(due.operation_id)
            provider = self.provider(operation.provider) if operation is not None else None
            if operation is None or provider is None:
                continue
            if due.action is Action.FINISH and operation.status is Status.PENDING:
                self.finish(operation, operation.planned_status or Status.SUCCEEDED, operation.planned_reason)
            elif due.action is Action.REVERSE and operation.status is Status.SUCCEEDED:
                self.reverse(operation)
            elif due.action is Action.EXPIRE and operation.status is Status.AUTHORIZED:
                operation.status = Status.EXPIRED
                operation.updated_at = operation.finished_at = due.at
            elif due.action is Action.CHARGEBACK and operation.status is Status.CAPTURED:
                self.chargeback(operation, operation.captured_amount - operation.refunded_amount, "fraud")

    def finish(self, operation: Operation, status: Status, reason: str | None) -> None:
        provider = self.provider(operation.provider)
        assert provider is not None
        now = self.clock.now()
        operation.status, operation.reason = status, reason
        operation.updated_at = operation.finished_at = now
        fee = provider.fee_for(operation.kind, operation.amount) if status is Status.SUCCEEDED else 0
        operation.fee = fee
        sign = 1 if operation.kind in INFLOW_KINDS else -1
        operation.movements.append(
            Movement(operation.id, operation.id, operation.kind, str(status), sign * operation.amount, fee, now)
        )
        self.metrics.operation_finished(operation.provider, operation.kind, str(status))
        if status is Status.SUCCEEDED and operation.behaviour.scenario is Scenario.REVERSAL:
            self.ledger.schedule(now + timedelta(seconds=provider.reversal_after_seconds), operation.id, Action.REVERSE)
        self.notify(operation, "finished")

    def reverse(self, operation: Operation) -> None:
        now = self.clock.now()
        operation.status = Status.REVERSED
        operation.updated_at = operation.reversed_at = now
        sign = -1 if operation.kind in INFLOW_KINDS else 1
        operation.movements.append(
            Movement(
                f"{operation.id}-R", operation.id, "reversal", "reversed", sign * operation.amount, -operation.fee, now
            )
        )
        self.metrics.operation_finished(operation.provider, operation.kind, "reversed")
        self.notify(operation, "reversed")

    def chargeback(self, operation: Operation, amount: int, reason: str) -> None:
        now = self.clock.now()
        operation.chargeback_amount += amount
        operation.updated_at = now
        number = sum(1 for m in operation.movements if m.type == "chargeback") + 1
        operation.movements.append(
            Movement(f"{operation.id}-CB{number}", operation.id, "chargeback", "chargeback", -amount, 0, now)
        )
        operation.extra.setdefault("chargebacks", []).append({"amount": amount, "reason": reason, "at": now})
        self.metrics.operation_finished(operation.provider, "chargeback", "chargeback")
        self.notify(operation, "chargeback")

    # notifications ------------------------------------------------------------------------
    def notify(self, operation: Operation, event: str) -> None:
        provider = self.provider(operation.provider)
        renderer = self._renderers.get(provider.style) if provider is not None else None
        if provider is None or renderer is None:
            return
        notification = self._notification(operation, provider, renderer(operation, event))
        if notification is None:
            return
        scenario = operation.behaviour.scenario
        copies = 0 if scenario is Scenario.LOST_CALLBACK else 2 if scenario is Scenario.DUPLICATE_CALLBACK else 1
        for _ in range(copies):
            operation.callbacks_sent += 1
            self._spawn(self._deliver(operation, provider, notification))

    def _notification(
        self, operation: Operation, provider: ProviderConfig, body: dict[str, Any]
    ) -> Notification | None:
        if provider.style is ApiStyle.MOMO:  # one callback, to the request's X-Callback-Url, no retry
            url = operation.callback_url
            return Notification(url, body, None, 0) if url else None
        if not provider.webhook_url:
            return None
        header = WAVE_SIGNATURE_HEADER if provider.style is ApiStyle.WAVE else CARD_SIGNATURE_HEADER
        return Notification(provider.webhook_url, body, header, provider.webhook_retries)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, operation: Operation, provider: ProviderConfig, notification: Notification) -> None:
        raw = json.dumps(notification.body, separators=(",", ":")).encode()
        client = self._http()
        for attempt in range(notification.retries + 1):
            if attempt:
                await asyncio.sleep(provider.webhook_retry_delay_seconds * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json", **operation.extra.get("trace_headers", {})}
            if notification.signature_header is not None:
                timestamp = int(self.clock.now().timestamp())
                headers[notification.signature_header] = signature_header(provider.webhook_secret, timestamp, raw)
            try:
                response = await client.post(
                    notification.url, content=raw, headers=headers, timeout=provider.webhook_timeout_seconds
                )
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            else:
                if response.is_success:
                    operation.callbacks_delivered += 1
                    self.metrics.webhook_attempt(operation.provider, "delivered")
                    return
                outcome = f"http_{response.status_code}"
            self.metrics.webhook_attempt(operation.provider, "failed")
            logger.info(
                "webhook delivery failed ({outcome}), attempt {attempt} for {provider}",
                outcome=outcome,
                attempt=attempt + 1,
                provider=operation.provider,
            )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    async def drain(self, within_seconds: float = 5.0) -> None:
        """Wait (bounded) for the background deliveries in flight."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_seconds)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _trace_headers() -> Mapping[str, str]:
    """The correlation id and W3C trace context of the request being handled, so callbacks
    continue its trace."""
    headers: dict[str, str] = {}
    inject_context(headers)
    correlation_id = get_correlation_id()
    if correlation_id is not None:
        headers[CORRELATION_HEADER] = correlation_id
    return headers
