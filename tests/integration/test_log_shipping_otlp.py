"""Logs and traces leave the process over OTLP/HTTP, as they do in the compose stack (Kora ->
OpenTelemetry Collector -> Loki / Tempo). The peer is a real OTLP/HTTP receiver
(tests/support/otlp.py) that decodes the protobuf bodies with the OTLP protocol's own message
classes, as a collector does. Kora's exporters are
not replaced by anything: what is asserted is what went over the wire."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from loguru import logger

from kora.observability import (
    TelemetrySettings,
    configure_log_shipping,
    configure_logging,
    configure_telemetry,
    configure_tracing,
    correlation_scope,
    get_tracer,
)
from kora.observability.log_shipping import unconfigure_log_shipping
from kora.observability.logging import unconfigure_logging
from tests.support.otlp import OtlpReceiver, log_attributes, otlp_receiver

PHONE = "+225 07 01 02 03 04"
PHONE_FORMS = ("2250701020304", "07 01 02 03 04", "0701020304", "07010203")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, sink=stream, service="kora-test")
    yield stream
    unconfigure_log_shipping()
    unconfigure_logging()


def test_records_arrive_with_their_trace_ids_and_without_a_phone_number(
    receiver: OtlpReceiver, json_lines: io.StringIO
) -> None:
    tracer_provider = configure_tracing(service_name="kora-test", exporter="none")
    configure_log_shipping(exporter="otlp", service_name="kora-api", level="INFO", endpoint=receiver.url)
    with get_tracer("kora.test").start_as_current_span("POST /v1/transfers") as span:
        with correlation_scope("req-7f3a9c") as correlation_id:
            logger.bind(amount=1_500, recipient_phone=PHONE, note=f"pour {PHONE}").info(f"transfer to {PHONE} accepted")
        logging.getLogger("kora.test.stdlib").warning("provider call for 0701020304 timed out")
        try:
            raise RuntimeError(f"provider refused {PHONE}")
        except RuntimeError:
            logger.exception("capture failed")
    logger.info("outside any span")
    logger.debug("below the shipping level")
    unconfigure_log_shipping()  # flushes the batch
    tracer_provider.shutdown()

    records = receiver.logs()
    bodies = [record.body.string_value for _, record in records]
    assert bodies == [
        "transfer to [REDACTED:number] accepted",
        "provider call for [REDACTED:number] timed out",
        "capture failed",
        "outside any span",
    ]
    context = span.get_span_context()
    for _, record in records[:3]:
        assert record.trace_id == context.trace_id.to_bytes(16, "big")
        assert record.span_id == context.span_id.to_bytes(8, "big")
    assert records[3][1].trace_id == b""  # no span, no id
    resource, first = records[0]
    assert resource["service.name"] == "kora-api"
    assert first.severity_text == "INFO"
    assert first.severity_number == 9  # SEVERITY_NUMBER_INFO
    assert first.time_unix_nano > 0
    attributes = log_attributes(first)
    assert attributes["amount"] == 1_500  # an int field stays an int
    assert attributes["recipient_phone"] == "[REDACTED]"  # a sensitive field name
    assert attributes["note"] == "pour [REDACTED:number]"
    assert attributes["correlation_id"] == correlation_id
    assert "correlation_id" not in log_attributes(records[1][1])  # none in force: absent, not empty
    assert log_attributes(records[1][1])["logger"] == "kora.test.stdlib"
    assert records[1][1].severity_text == "WARNING"
    failed = log_attributes(records[2][1])
    assert failed["exception.type"] == "RuntimeError"
    assert "[REDACTED:number]" in failed["exception.stacktrace"]
    # Not in any field, not in any encoding: the bytes that crossed the network.
    wire = receiver.raw()
    for form in PHONE_FORMS:
        assert form.encode() not in wire
    # The JSON line on stderr and the shipped record say the same thing.
    first_line = json.loads(json_lines.getvalue().splitlines()[0])
    assert first_line["message"] == bodies[0]
    assert first_line["trace_id"] == format(context.trace_id, "032x")


def test_the_exporters_own_messages_are_not_shipped_again(receiver: OtlpReceiver, json_lines: io.StringIO) -> None:
    configure_log_shipping(exporter="otlp", service_name="kora-api", endpoint=receiver.url)
    logging.getLogger("opentelemetry.exporter.otlp.proto.http").warning("Failed to export logs batch")
    logging.getLogger("urllib3.connectionpool").warning("Retrying connection")
    logger.info("a business line")
    unconfigure_log_shipping()
    assert [record.body.string_value for _, record in receiver.logs()] == ["a business line"]
    assert "Failed to export logs batch" in json_lines.getvalue()  # still on stderr, locally


def test_a_process_configured_from_its_environment_ships_traces_and_logs_that_join_up(
    receiver: OtlpReceiver, json_lines: io.StringIO
) -> None:
    """What each Kora service of docker-compose.yml gets: the same variables, one collector."""
    settings = TelemetrySettings.from_env(
        "kora-worker",
        env={
            "KORA_OTEL_EXPORTER": "otlp",
            "KORA_LOG_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "kora-worker-kpi",
            "KORA_LOG_LEVEL": "INFO",
        },
    )
    telemetry = configure_telemetry(settings)
    assert telemetry.logger_provider is not None
    with get_tracer("kora.events").start_as_current_span("events.consume payment.captured"):
        logger.info(f"event for {PHONE} applied")
    telemetry.tracer_provider.shutdown()
    unconfigure_log_shipping()

    [(span_resource, span)] = receiver.spans()
    [(log_resource, record)] = receiver.logs()
    assert span_resource["service.name"] == log_resource["service.name"] == "kora-worker-kpi"
    assert span.name == "events.consume payment.captured"
    assert record.trace_id == span.trace_id
    assert record.span_id == span.span_id
    assert record.body.string_value == "event for [REDACTED:number] applied"
    for form in PHONE_FORMS:
        assert form.encode() not in receiver.raw()


def test_no_exporter_ships_nothing(receiver: OtlpReceiver, json_lines: io.StringIO) -> None:
    telemetry = configure_telemetry(TelemetrySettings.from_env("kora-api", env={}))
    assert telemetry.logger_provider is None
    logger.info("stays local")
    telemetry.tracer_provider.shutdown()
    assert receiver.requests == []


def test_unknown_exporters_and_ratios_are_refused_before_anything_is_configured() -> None:
    with pytest.raises(ValueError, match="unknown log exporter"):
        TelemetrySettings.from_env("kora-api", env={"KORA_LOG_EXPORTER": "loki"})
    with pytest.raises(ValueError, match="unknown trace exporter"):
        TelemetrySettings.from_env("kora-api", env={"KORA_OTEL_EXPORTER": "jaeger"})
    with pytest.raises(ValueError, match="between 0 and 1"):
        TelemetrySettings.from_env("kora-api", env={"KORA_OTEL_SAMPLE_RATIO": "2"})
    with pytest.raises(ValueError, match="unknown log exporter"):
        configure_log_shipping(exporter="syslog", service_name="kora-api")
