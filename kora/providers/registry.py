"""Which providers are configured, by name; which serve an operation in a currency, in order;
and how many days each takes to settle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kora.providers.ports import ProviderGateway
from kora.providers.routing import RoutingTable

DEFAULT_SETTLEMENT_DAYS = 1  # J+1


class StaticProviderRegistry:
    def __init__(
        self,
        gateways: Iterable[ProviderGateway],
        *,
        default: str,
        routing: RoutingTable | None = None,
        settlement_days: Mapping[str, int] | None = None,
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
        the routing table's route when one is configured, else the default provider alone."""
        if self._routing is not None:
            names = self._routing.providers_for(operation, currency)
            if names:
                return names
        return (self._default,)

    def settlement_days(self, name: str) -> int:
        """After how many days the provider settles what it confirmed (J+N); J+1 by default."""
        return self._settlement_days.get(name, DEFAULT_SETTLEMENT_DAYS)
