"""Routing and fallback: which providers serve an operation in a currency, in order, and
when moving to the next one cannot move money twice.

The router moves on only when the provider it tried **certainly did not accept** the request:
:class:`ProviderUnavailable` (connection refused, breaker open, bulkhead full...) or a
:class:`ProviderDeclined` that policy marks ``retryable_elsewhere``. An ambiguous outcome
(:class:`ProviderTimeout`) stops routing and is re-raised: the caller resolves it by status
query at that provider first. So does any unclassified exception (it is treated as
ambiguous) and cancellation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kora.providers.resilience import (
    EXHAUSTED,
    NO_ROUTE,
    NoopProviderMetrics,
    ProviderDeclined,
    ProviderError,
    ProviderMetrics,
    ProviderUnavailable,
)

T = TypeVar("T")

ANY_CURRENCY = "*"
_OPERATION = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PROVIDER = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Ordered provider names per ``(operation, currency)``; currency ``"*"`` is the fallback
    route of an operation for currencies without their own.

    Build it with :meth:`from_mapping` / :meth:`from_json`, which validate it:
    ``{"disburse": {"XOF": ["mtn", "wave"], "*": ["sandbox"]}, "collect": {...}}``.
    """

    routes: Mapping[tuple[str, str], tuple[str, ...]]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Mapping[str, Sequence[str]]]) -> RoutingTable:
        """Raises ``ValueError`` on an ill-formed operation, currency or provider name, an
        empty provider list, or a provider listed twice in one route."""
        routes: dict[tuple[str, str], tuple[str, ...]] = {}
        for operation, by_currency in data.items():
            if not isinstance(operation, str) or _OPERATION.fullmatch(operation) is None:
                raise ValueError(f"bad operation name in routing: {operation!r}")
            if not isinstance(by_currency, Mapping):
                raise ValueError(f"routing for {operation!r} must map currencies to provider lists")
            for currency, providers in by_currency.items():
                well_formed = isinstance(currency, str) and _CURRENCY.fullmatch(currency) is not None
                if currency != ANY_CURRENCY and not well_formed:
                    raise ValueError(f"bad currency in routing for {operation!r}: {currency!r}")
                if isinstance(providers, str) or not isinstance(providers, Sequence):
                    raise ValueError(f"routing {operation}/{currency} must be a list of provider names")
                names = tuple(providers)
                if not names:
                    raise ValueError(f"routing {operation}/{currency} lists no provider")
                if any(not isinstance(n, str) or _PROVIDER.fullmatch(n) is None for n in names):
                    raise ValueError(f"bad provider name in routing {operation}/{currency}")
                if len(set(names)) != len(names):
                    raise ValueError(f"routing {operation}/{currency} lists a provider twice")
                routes[(operation, currency)] = names
        return cls(routes)

    @classmethod
    def from_json(cls, text: str) -> RoutingTable:
        """The same shape as :meth:`from_mapping`, as JSON (e.g. from an environment variable)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("routing JSON must be an object of operations")
        return cls.from_mapping(data)

    def providers_for(self, operation: str, currency: str) -> tuple[str, ...]:
        """The ordered providers for ``operation`` in ``currency`` (its own route, else the
        operation's ``"*"`` route), or ``()`` when there is none."""
        return self.routes.get((operation, currency)) or self.routes.get((operation, ANY_CURRENCY), ())

    def provider_names(self) -> frozenset[str]:
        return frozenset(name for names in self.routes.values() for name in names)

    def check_configured(self, configured: Iterable[str]) -> None:
        """Raises ``ValueError`` naming the providers routed to but not configured."""
        missing = self.provider_names() - set(configured)
        if missing:
            raise ValueError(f"routing names unconfigured providers: {sorted(missing)}")


@dataclass(frozen=True, slots=True)
class RouteAttempt:
    """One provider the router tried, and how it ended (``accepted``, ``unavailable``,
    ``declined``, ``ambiguous`` or ``error``); ``reason`` is the error's reason word."""

    provider: str
    outcome: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Routed(Generic[T]):
    """What the chosen provider returned, which provider it was, and every attempt in order
    (for the audit trail)."""

    value: T
    provider: str
    attempts: tuple[RouteAttempt, ...]

    @property
    def tried(self) -> tuple[str, ...]:
        return tuple(a.provider for a in self.attempts)


class ProviderRouter:
    """Routes one request through the ordered providers of its operation and currency."""

    def __init__(self, table: RoutingTable, *, metrics: ProviderMetrics | None = None) -> None:
        self.table = table
        self._metrics = metrics or NoopProviderMetrics()

    async def route(self, operation: str, currency: str, attempt: Callable[[str], Awaitable[T]]) -> T:
        """:meth:`route_with_trail` without the trail."""
        return (await self.route_with_trail(operation, currency, attempt)).value

    async def route_with_trail(
        self, operation: str, currency: str, attempt: Callable[[str], Awaitable[T]]
    ) -> Routed[T]:
        """Call ``attempt(provider)`` for each provider of the route in order until one
        returns; that result is returned with the provider's name and the attempts made.

        Moves to the next provider only after :class:`ProviderUnavailable` or a
        :class:`ProviderDeclined` with ``retryable_elsewhere`` (counted as a fallback in the
        metrics). Raised errors carry ``tried``, the providers attempted, in order.

        Raises:
            ProviderTimeout: an ambiguous outcome, re-raised at once; no later provider is
                called. Resolve it by status query at ``exc.provider``.
            ProviderDeclined: a decline not retryable elsewhere, at once; or, when every
                provider of the route declined, the last decline.
            ProviderUnavailable: ``"no_route"`` when no provider serves the route;
                ``"exhausted"`` when every provider failed without accepting (chained from
                the last error).
            Exception: any other exception of ``attempt`` (including cancellation),
                unchanged and at once; treat it as ambiguous.
        """
        providers = self.table.providers_for(operation, currency)
        if not providers:
            raise ProviderUnavailable(NO_ROUTE)
        attempts: list[RouteAttempt] = []
        last: ProviderError | None = None
        for position, provider in enumerate(providers, start=1):
            try:
                value = await attempt(provider)
            except ProviderUnavailable as exc:
                attempts.append(RouteAttempt(provider, "unavailable", exc.reason))
                last = exc
            except ProviderDeclined as exc:
                attempts.append(RouteAttempt(provider, "declined", exc.code))
                if not exc.retryable_elsewhere:
                    exc.tried = tuple(a.provider for a in attempts)
                    raise
                last = exc
            except ProviderError as exc:
                attempts.append(RouteAttempt(provider, "ambiguous", exc.reason))
                exc.tried = tuple(a.provider for a in attempts)
                raise
            else:
                attempts.append(RouteAttempt(provider, "accepted"))
                return Routed(value, provider, tuple(attempts))
            if position < len(providers):
                self._metrics.provider_fallback(operation, provider, last.reason)
        tried = tuple(a.provider for a in attempts)
        if all(a.outcome == "declined" for a in attempts) and isinstance(last, ProviderDeclined):
            last.tried = tried
            raise last
        raise ProviderUnavailable(EXHAUSTED, tried=tried) from last
