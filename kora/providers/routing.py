"""Routing: which providers serve an operation in a currency, in order.

The payments module walks a route (kora/payments/service/provider_moves.py) and moves to the
next provider only when the one it tried **certainly did not accept** the request
(`ProviderResult.not_accepted`: connection refused, breaker open, bulkhead full, a decline that
policy marks retryable elsewhere); an ambiguous outcome ends the routing (ADR 0017).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

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
