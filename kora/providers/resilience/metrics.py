"""What the resilience toolkit reports. A narrow Protocol so the toolkit does not depend on
the Prometheus wiring; ``KoraMetrics`` implements it (same method names), and
:class:`NoopProviderMetrics` stands in when nothing is wired.

Arguments are low-cardinality words (provider names, operations, outcome and reason
words); implementations still pass them through ``safe_label``.
"""

from __future__ import annotations

from typing import Protocol


class ProviderMetrics(Protocol):
    def provider_request(self, provider: str, operation: str, outcome: str, seconds: float) -> None:
        """One attempt finished. ``outcome``: succeeded, declined, unavailable, timeout, error."""
        ...

    def provider_retry(self, provider: str, operation: str, reason: str) -> None:
        """An attempt is about to be retried after failing with ``reason``."""
        ...

    def provider_breaker_state(self, provider: str, state: str) -> None:
        """The provider's breaker is now in ``state`` (closed, half-open, open)."""
        ...

    def provider_breaker_transition(self, provider: str, from_state: str, to_state: str) -> None:
        """The provider's breaker moved from ``from_state`` to ``to_state``."""
        ...

    def provider_bulkhead_rejected(self, provider: str) -> None:
        """A call was refused because the provider's bulkhead was full."""
        ...

    def provider_in_flight(self, provider: str, in_flight: int) -> None:
        """Calls in flight to the provider right now."""
        ...

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None:
        """The router moved past ``from_provider`` because of ``reason``."""
        ...


class NoopProviderMetrics:
    """Records nothing."""

    def provider_request(self, provider: str, operation: str, outcome: str, seconds: float) -> None:
        pass

    def provider_retry(self, provider: str, operation: str, reason: str) -> None:
        pass

    def provider_breaker_state(self, provider: str, state: str) -> None:
        pass

    def provider_breaker_transition(self, provider: str, from_state: str, to_state: str) -> None:
        pass

    def provider_bulkhead_rejected(self, provider: str) -> None:
        pass

    def provider_in_flight(self, provider: str, in_flight: int) -> None:
        pass

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None:
        pass
