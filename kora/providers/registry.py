"""Which providers are configured, by name; which serve an operation in a currency, in order;
and how many days each takes to settle. Operations may take a provider out of routing
(`kora ops provider disable`): `route` then skips it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from kora.providers.ports import ProviderGateway, ProviderOperation
from kora.providers.routing import RoutingTable

DEFAULT_SETTLEMENT_DAYS = 1  # J+1


class ProviderAvailability(Protocol):
    def disabled_providers(self) -> Mapping[str, int]:
        """The providers operations took out of routing → the Retry-After to give a client
        when no provider is left (no I/O: called on the payment path)."""
        ...


class NoProviderAvailable(Exception):
    """Every provider of the route is disabled by operations: the request is refused before
    anything is written (503)."""

    code = "provider_unavailable"

    def __init__(self, operation: str, currency: str, retry_after_seconds: int) -> None:
        super().__init__(f"no provider is available for {operation} in {currency} right now; retry later")
        self.retry_after_seconds = retry_after_seconds


class StaticProviderRegistry:
    def __init__(
        self,
        gateways: Iterable[ProviderGateway],
        *,
        default: str,
        routing: RoutingTable | None = None,
        settlement_days: Mapping[str, int] | None = None,
        availability: ProviderAvailability | None = None,
    ) -> None:
        self._gateways = {g.name: g for g in gateways}
        if default not in self._gateways:
            raise ValueError(f"default provider {default!r} is not configured")
        self._default = default
        self._routing = routing
        if routing is not None:
            routing.check_configured(self._gateways)
        self._settlement_days = dict(settlement_days or {})
        if any(days < 0 for days in self._settlement_days.values()):
            raise ValueError("settlement days cannot be negative")
        self._availability = availability

    def get(self, name: str) -> ProviderGateway | None:
        return self._gateways.get(name)

    @property
    def default(self) -> str:
        return self._default

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._gateways)

    def route(self, operation: str, currency: str) -> tuple[str, ...]:
        """The providers to try, in order, for `operation` ("collect"/"disburse") in `currency`:
        the routing table's route when one is configured, else the default provider alone,
        less the providers operations disabled. Raises `NoProviderAvailable` when none is left.
        `get` still finds a disabled provider: payments already there are resolved with it."""
        names = self.configured_route(operation, currency)
        disabled = self._availability.disabled_providers() if self._availability is not None else {}
        if not disabled:
            return names
        available = tuple(name for name in names if name not in disabled)
        if not available:
            raise NoProviderAvailable(operation, currency, min(disabled[name] for name in names))
        return available

    def configured_route(self, operation: str, currency: str) -> tuple[str, ...]:
        """The route as configured, whatever operations disabled."""
        if self._routing is not None:
            names = self._routing.providers_for(operation, currency)
            if names:
                return names
        return (self._default,)

    def routes(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Every route, `(operation, currency)` → providers in order; currency `*` is what an
        operation uses in the currencies without a route of their own (the default provider's
        when the routing table gives none)."""
        routes = dict(self._routing.routes) if self._routing is not None else {}
        for operation in ProviderOperation:
            routes.setdefault((operation.value, "*"), (self._default,))
        return routes

    def settlement_days(self, name: str) -> int:
        """After how many days the provider settles what it confirmed (J+N); J+1 by default."""
        return self._settlement_days.get(name, DEFAULT_SETTLEMENT_DAYS)
