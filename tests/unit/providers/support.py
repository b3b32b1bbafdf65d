"""Test doubles for the resilience toolkit: a fake clock whose sleep advances it, and a
metrics recorder."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class RecordingMetrics:
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    retries: list[tuple[str, str, str]] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)

    def provider_request(self, provider: str, operation: str, outcome: str, seconds: float) -> None:
        self.requests.append((provider, operation, outcome))

    def provider_retry(self, provider: str, operation: str, reason: str) -> None:
        self.retries.append((provider, operation, reason))

    def provider_breaker_state(self, provider: str, state: str) -> None:
        self.states.append((provider, state))

    def provider_breaker_transition(self, provider: str, from_state: str, to_state: str) -> None:
        self.transitions.append((provider, from_state, to_state))

    def provider_bulkhead_rejected(self, provider: str) -> None:
        self.rejections.append(provider)

    def provider_in_flight(self, provider: str, in_flight: int) -> None:
        self.in_flight.append(in_flight)

    def provider_fallback(self, operation: str, from_provider: str, reason: str) -> None:
        self.fallbacks.append((operation, from_provider, reason))
