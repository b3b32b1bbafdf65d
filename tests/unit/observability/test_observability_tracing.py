from __future__ import annotations

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from kora.observability import (
    configure_tracing,
    current_trace_ids,
    extract_context,
    extract_context_from_asgi_headers,
    get_tracer,
    inject_context,
    instrument_engine,
)
from kora.platform.db import create_engine

from .conftest import Tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_configure_can_run_again_and_the_global_api_follows(tracing: Tracing) -> None:
    early_tracer = trace.get_tracer("early")  # obtained before the reconfiguration
    again = configure_tracing(service_name="kora-again", exporter="none")
    try:
        assert isinstance(again, TracerProvider)
        assert again is not tracing.provider
        assert again.resource.attributes["service.name"] == "kora-again"
        with early_tracer.start_as_current_span("s") as span:
            assert isinstance(span, trace.Span)
        assert tracing.exporter.get_finished_spans() == ()  # went to the newer provider
    finally:
        again.shutdown()


def test_get_tracer_uses_the_configured_provider(tracing: Tracing) -> None:
    with get_tracer("kora.test").start_as_current_span("unit of work"):
        pass
    [span] = tracing.exporter.get_finished_spans()
    assert span.name == "unit of work"
    assert span.resource.attributes["service.name"] == "kora-test"


def test_current_trace_ids(tracing: Tracing) -> None:
    assert current_trace_ids() == (None, None)
    with get_tracer("kora.test").start_as_current_span("s") as span:
        trace_id, span_id = current_trace_ids()
    context = span.get_span_context()
    assert trace_id == format(context.trace_id, "032x")
    assert span_id == format(context.span_id, "016x")


def test_unknown_exporter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trace exporter"):
        configure_tracing(service_name="x", exporter="jaeger")


def test_otlp_exporter_builds_with_a_base_endpoint() -> None:
    provider = configure_tracing(service_name="x", exporter="otlp", endpoint="http://127.0.0.1:4318")
    provider.shutdown()


def test_sampling_ratio_zero_keeps_trace_ids_but_records_nothing(tracing: Tracing) -> None:
    provider = configure_tracing(service_name="x", exporter="none", sample_ratio=0.0)
    try:
        with get_tracer("kora.test").start_as_current_span("s") as span:
            assert not span.is_recording()
    finally:
        provider.shutdown()


def test_w3c_context_round_trip(tracing: Tracing) -> None:
    carrier: dict[str, str] = {}
    with get_tracer("kora.test").start_as_current_span("producer") as producer:
        inject_context(carrier)
    assert carrier["traceparent"].split("-")[1] == format(producer.get_span_context().trace_id, "032x")
    with get_tracer("kora.test").start_as_current_span("consumer", context=extract_context(carrier)) as consumer:
        pass
    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id


def test_extracts_traceparent_from_asgi_headers() -> None:
    context = extract_context_from_asgi_headers([(b"host", b"x"), (b"traceparent", TRACEPARENT.encode())])
    parent = trace.get_current_span(context).get_span_context()
    assert format(parent.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(parent.span_id, "016x") == "b7ad6b7169203331"
    assert parent.is_remote


async def test_instrumented_engine_traces_statements_under_the_current_span(tracing: Tracing) -> None:
    engine = create_engine("sqlite+aiosqlite://")
    instrument_engine(engine)
    instrument_engine(engine)  # idempotent: still one span per statement
    try:
        with get_tracer("kora.test").start_as_current_span("use case") as parent:
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()
    statements = [span for span in tracing.exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]
    [select] = [span for span in statements if span.name.startswith("SELECT")]
    assert select.parent is not None
    assert select.parent.span_id == parent.get_span_context().span_id
    assert select.context.trace_id == parent.get_span_context().trace_id
