"""KoraMetrics serves the provider resilience toolkit's metrics port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from kora.observability import KoraMetrics
from kora.providers.resilience import ProviderGuard


def test_kora_metrics_is_the_provider_metrics_port() -> None:
    metrics = KoraMetrics(CollectorRegistry())
    guard = ProviderGuard("momo", metrics=metrics)  # type-checks only if KoraMetrics fits the port
    assert guard.breaker is not None
    metrics.provider_request("momo", "disburse", "timeout", 2.5)
    metrics.provider_breaker_state("momo", "half-open")
    metrics.provider_fallback("disburse", "momo", "unavailable")


def test_provider_metrics_are_exposed_with_low_cardinality_labels() -> None:
    registry = CollectorRegistry()
    metrics = KoraMetrics(registry)
    metrics.provider_request("wave", "collect", "succeeded", 0.3)
    metrics.provider_breaker_state("wave", "open")
    metrics.provider_bulkhead_rejected("wave")
    text = generate_latest(registry).decode()
    assert 'kora_provider_requests_total{operation="collect",outcome="succeeded",provider="wave"} 1.0' in text
    assert 'kora_provider_breaker_state{provider="wave"} 2.0' in text
    assert 'kora_provider_bulkhead_rejections_total{provider="wave"} 1.0' in text
