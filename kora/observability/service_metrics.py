"""Metrics of the core's service API (ADR 0023): refused service tokens, service calls by
operation and outcome, and ledger corrections. Labels are bounded words: a configured service
name (anything else is `unknown`), refusal reasons, operations, correction kinds, currencies."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

from kora.observability.metrics import HTTP_DURATION_BUCKETS, safe_label

UNKNOWN_SERVICE = "unknown"


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry, *, services: Iterable[str] = ()) -> None:
        self._services = frozenset(services)
        self._refusals = Counter(
            "kora_service_auth_refusals_total",
            "Service calls refused: the token missing, invalid, expired, asking for ungranted scopes "
            "(service_token_invalid), or without the operation's scope (scope_missing).",
            ["reason", "service"],
            registry=registry,
        )
        self._calls = Counter(
            "kora_service_calls_total",
            "Authenticated service calls by service, operation and outcome (ok | replayed | refused | error).",
            ["service", "operation", "outcome"],
            registry=registry,
        )
        self._duration = Histogram(
            "kora_service_call_duration_seconds",
            "Time to answer an authenticated service call, by operation.",
            ["operation"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )
        self._corrections = Counter(
            "kora_ledger_corrections_total",
            "Corrections posted for reconciliation cases, by kind and outcome (posted | replayed | refused).",
            ["kind", "outcome"],
            registry=registry,
        )
        self._correction_amount = Counter(
            "kora_ledger_corrections_amount_total",
            "Amount moved by posted corrections, in minor units, by kind and currency.",
            ["kind", "currency"],
            registry=registry,
        )

    def service_label(self, service: str | None) -> str:
        """A configured service's name; `unknown` for anything else (never an untrusted claim)."""
        return service if service in self._services else UNKNOWN_SERVICE

    def refused(self, reason: str, service: str | None) -> None:
        self._refusals.labels(safe_label(reason), self.service_label(service)).inc()

    def call(self, service: str, operation: str, outcome: str, seconds: float) -> None:
        self._calls.labels(self.service_label(service), safe_label(operation), safe_label(outcome)).inc()
        self._duration.labels(safe_label(operation)).observe(seconds)

    def correction(self, kind: str, outcome: str, *, currency: str | None = None, amount: int = 0) -> None:
        self._corrections.labels(safe_label(kind), safe_label(outcome)).inc()
        if outcome == "posted" and currency is not None and amount > 0:
            self._correction_amount.labels(safe_label(kind), safe_label(currency)).inc(amount)
