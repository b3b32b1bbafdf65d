from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from kora.observability import KoraMetrics, get_tracer, render_metrics, safe_label

from .conftest import Tracing

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> KoraMetrics:
    return KoraMetrics(registry)


def scrape(registry: CollectorRegistry, accept: str | None = None) -> str:
    body, _ = render_metrics(registry, accept)
    return body.decode()


def test_duration_buckets_include_every_slo_threshold(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    metrics.observe_http("GET", "/items/{item_id}", 200, 0.01)
    text = scrape(registry)
    for threshold in ("0.15", "0.2", "0.25", "0.3", "0.35", "0.4", "0.45", "0.5", "0.005", "10.0"):
        assert f'kora_http_request_duration_seconds_bucket{{le="{threshold}",method="GET"' in text


def test_openmetrics_carries_the_trace_id_exemplar(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    metrics.observe_http("POST", "/v1/transfers", 201, 0.18, TRACE_ID)
    body, content_type = render_metrics(registry, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    parsed = text_string_to_metric_families(body.decode())  # type: ignore[no-untyped-call]
    families = {family.name: family for family in parsed}
    bucket = next(
        sample
        for sample in families["kora_http_request_duration_seconds"].samples
        if sample.name.endswith("_bucket") and sample.labels["le"] == "0.2"
    )
    assert bucket.exemplar is not None
    assert bucket.exemplar.labels == {"trace_id": TRACE_ID}
    assert bucket.exemplar.value == pytest.approx(0.18)
    counter = next(s for s in families["kora_http_requests"].samples if s.name == "kora_http_requests_total")
    assert counter.labels == {"method": "POST", "route": "/v1/transfers", "status": "201"}
    assert counter.exemplar is not None
    assert counter.exemplar.labels == {"trace_id": TRACE_ID}


def test_classic_text_format_by_default(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    metrics.observe_http("GET", "/health", 200, 0.001, TRACE_ID)
    body, content_type = render_metrics(registry, "text/plain")
    assert content_type.startswith("text/plain")
    assert TRACE_ID not in body.decode()  # exemplars exist only in OpenMetrics
    assert 'kora_http_requests_total{method="GET",route="/health",status="200"} 1.0' in body.decode()


def test_business_counters_take_the_exemplar_from_the_active_span(
    tracing: Tracing, metrics: KoraMetrics, registry: CollectorRegistry
) -> None:
    with get_tracer("kora.test").start_as_current_span("transfer") as span:
        metrics.payment_finished("p2p", "SETTLED")
        metrics.amount_moved("p2p", "XOF", 1_500)
        metrics.ledger_posted("p2p", 0.004)
    trace_id = format(span.get_span_context().trace_id, "032x")
    text = scrape(registry, OPENMETRICS)
    assert f'kora_payments_total{{status="SETTLED",type="p2p"}} 1.0 # {{trace_id="{trace_id}"}}' in text
    assert 'kora_payment_amount_minor_total{currency="XOF",type="p2p"} 1500.0' in text
    assert 'kora_ledger_postings_total{kind="p2p"} 1.0' in text
    assert "kora_ledger_posting_duration_seconds_count 1.0" in text


def test_an_unsampled_trace_gives_no_exemplar(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    """With a sample ratio below 1, an exemplar must not point at a trace Tempo never got."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    unsampled = SpanContext(int(TRACE_ID, 16), 0x1234, is_remote=False, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(unsampled)):
        metrics.payment_finished("p2p", "SETTLED")
    text = scrape(registry, OPENMETRICS)
    assert 'kora_payments_total{status="SETTLED",type="p2p"} 1.0' in text
    assert TRACE_ID not in text


def test_every_business_signal_is_exposed(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    metrics.idempotent_replay("/v1/transfers")
    metrics.idempotency_conflict("key_reused")
    metrics.auth_failure("invalid_credentials")
    metrics.lockout("user")
    metrics.audit_recorded("login")
    metrics.set_invariant_report({"EntriesBalance": 0, "BalanceMatchesEntries": 2}, at=1_732_550_000.0)
    text = scrape(registry)
    for line in (
        'kora_idempotent_replays_total{route="/v1/transfers"} 1.0',
        'kora_idempotency_conflicts_total{reason="key_reused"} 1.0',
        'kora_auth_failures_total{reason="invalid_credentials"} 1.0',
        'kora_auth_lockouts_total{scope="user"} 1.0',
        'kora_audit_records_total{action="login"} 1.0',
        'kora_ledger_invariant_violations{check="EntriesBalance"} 0.0',
        'kora_ledger_invariant_violations{check="BalanceMatchesEntries"} 2.0',
        "kora_ledger_verify_last_run_timestamp_seconds 1.73255e+09",
        "kora_http_requests_in_flight 0.0",
    ):
        assert line in text


def test_in_flight_gauge(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    metrics.http_request_started()
    metrics.http_request_started()
    metrics.http_request_finished()
    assert "kora_http_requests_in_flight 1.0" in scrape(registry)


@pytest.mark.parametrize(
    "value",
    [
        "+2250701020304",
        "2250701020304",
        "/v1/users/0701020304",
        "550e8400-e29b-41d4-a716-446655440000",
        "has space",
        "x" * 81,
        "",
        "12345",
    ],
)
def test_unsafe_label_values_collapse_to_other(value: str) -> None:
    assert safe_label(value) == "other"


@pytest.mark.parametrize("value", ["p2p", "SETTLED", "XOF", "/v1/payments/{payment_id}", "unmatched", "cash_in"])
def test_safe_label_values_are_kept(value: str) -> None:
    assert safe_label(value) == value


def test_labels_never_carry_a_phone_number(metrics: KoraMetrics, registry: CollectorRegistry) -> None:
    metrics.auth_failure("+2250701020304")
    metrics.observe_http("GET", "/v1/users/0701020304", 404, 0.01)
    metrics.observe_http("BREW", "/coffee", 418, 0.01)
    text = scrape(registry)
    assert "0701020304" not in text
    assert 'kora_auth_failures_total{reason="other"} 1.0' in text
    assert 'method="other",route="/coffee"' in text


@pytest.mark.parametrize("amount", [-1, 1.5, True])
def test_amount_moved_takes_non_negative_minor_units(metrics: KoraMetrics, amount: object) -> None:
    with pytest.raises(ValueError, match="minor units"):
        metrics.amount_moved("p2p", "XOF", amount)  # type: ignore[arg-type]


def test_each_registry_owns_its_metrics() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    KoraMetrics(first).payment_finished("p2p", "SETTLED")
    KoraMetrics(second)
    assert re.search(r"kora_payments_total\{[^}]*\} 1\.0", scrape(first))
    assert "kora_payments_total{" not in scrape(second)
