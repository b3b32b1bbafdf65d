"""The simulator's own metrics, on its own registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from kora.observability import KoraMetrics, safe_label


class SimulatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = KoraMetrics(self.registry)
        self._recorded = Counter(
            "kora_sim_operations_recorded",
            "Operations the simulator accepted, by provider, kind and injected scenario.",
            ("provider", "kind", "scenario"),
            registry=self.registry,
        )
        self._finished = Counter(
            "kora_sim_operations_finished",
            "Operations that reached a status, by provider, kind and status.",
            ("provider", "kind", "status"),
            registry=self.registry,
        )
        self._webhooks = Counter(
            "kora_sim_webhook_attempts",
            "Callback and webhook delivery attempts, by provider and outcome.",
            ("provider", "outcome"),
            registry=self.registry,
        )

    def operation_recorded(self, provider: str, kind: str, scenario: str) -> None:
        self._recorded.labels(safe_label(provider), safe_label(kind), safe_label(scenario)).inc()

    def operation_finished(self, provider: str, kind: str, status: str) -> None:
        self._finished.labels(safe_label(provider), safe_label(kind), safe_label(status)).inc()

    def webhook_attempt(self, provider: str, outcome: str) -> None:
        self._webhooks.labels(safe_label(provider), safe_label(outcome)).inc()
