"""The switches as Prometheus gauges, on the process's registry (never the global one):

- `kora_operation_paused{operation}`: 1 while the operation is paused, else 0 (every operation
  has a series, so "not paused" is an explicit 0, not an absence);
- `kora_provider_disabled{provider}`: 1 while the provider is out of routing, else 0 (every
  configured provider has a series);
- `kora_operation_refusals_total{operation, reason}`: requests refused by a control (reason
  `operation_paused`, `provider_disabled`, `no_provider`) — a deliberate 503, which SLO
  queries may subtract from the errors;
- `kora_operational_controls_refresh_failures_total`: reads of the controls that failed (the
  process then goes on with the last switches it read).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from kora.operations.domain import (
    REFUSED_NO_PROVIDER,
    REFUSED_PAUSED,
    REFUSED_PROVIDER_DISABLED,
    ControlSnapshot,
    Operation,
)

_REASONS = {r: r for r in (REFUSED_PAUSED, REFUSED_PROVIDER_DISABLED, REFUSED_NO_PROVIDER)}


class PrometheusControlMetrics:
    def __init__(self, registry: CollectorRegistry, *, providers: Iterable[str] = ()) -> None:
        self._paused = Gauge(
            "kora_operation_paused",
            "1 while operations has paused this operation (new requests get 503 operation_paused), else 0.",
            ("operation",),
            registry=registry,
        )
        self._disabled = Gauge(
            "kora_provider_disabled",
            "1 while operations has taken this provider out of routing, else 0.",
            ("provider",),
            registry=registry,
        )
        self._refusals = Counter(
            "kora_operation_refusals",
            "Requests refused by an operational control, by operation and reason "
            "(operation_paused, provider_disabled, no_provider).",
            ("operation", "reason"),
            registry=registry,
        )
        self._refresh_failures = Counter(
            "kora_operational_controls_refresh_failures",
            "Reads of the operational controls that failed; the process kept the last ones it read.",
            registry=registry,
        )
        self.publish(ControlSnapshot(), providers)

    def publish(self, snapshot: ControlSnapshot, providers: Iterable[str]) -> None:
        for operation in Operation:
            self._paused.labels(operation.value).set(1 if snapshot.pause_of(operation) else 0)
        for provider in {*providers, *snapshot.disabled}:
            self._disabled.labels(provider).set(1 if snapshot.is_disabled(provider) else 0)

    def refused(self, operation: str, reason: str) -> None:
        self._refusals.labels(Operation(operation).value, _REASONS.get(reason, "other")).inc()

    def refresh_failed(self) -> None:
        self._refresh_failures.inc()
