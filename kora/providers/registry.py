"""Which providers are configured, by name."""

from __future__ import annotations

from collections.abc import Iterable

from kora.providers.ports import ProviderGateway


class StaticProviderRegistry:
    def __init__(self, gateways: Iterable[ProviderGateway], *, default: str) -> None:
        self._gateways = {g.name: g for g in gateways}
        if default not in self._gateways:
            raise ValueError(f"default provider {default!r} is not configured")
        self._default = default

    def get(self, name: str) -> ProviderGateway | None:
        return self._gateways.get(name)

    @property
    def default(self) -> str:
        return self._default

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._gateways)
