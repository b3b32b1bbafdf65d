from __future__ import annotations

import io
import json
import logging
import warnings

from loguru import logger

from kora.observability import configure_logging, correlation_scope, get_tracer
from kora.observability.testing import capture_logs

from .conftest import LogStream, Tracing

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIwMTkzNmIyYyJ9.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def test_json_lines_carry_correlation_and_trace_ids(logs: LogStream, tracing: Tracing) -> None:
    with correlation_scope("corr-12345678"), get_tracer("test").start_as_current_span("work") as span:
        logger.bind(payment_id="p-1").info("payment {state}", state="captured")
    [record] = logs.records()
    context = span.get_span_context()
    assert record["message"] == "payment captured"
    assert record["level"] == "INFO"
    assert record["correlation_id"] == "corr-12345678"
    assert record["trace_id"] == format(context.trace_id, "032x")
    assert record["span_id"] == format(context.span_id, "016x")
    assert record["payment_id"] == "p-1"
    assert record["state"] == "captured"
    assert record["logger"] == __name__
    assert record["ts"].endswith("Z")


def test_ids_are_null_outside_a_request(logs: LogStream) -> None:
    logger.info("idle")
    [record] = logs.records()
    assert record["correlation_id"] is None
    assert record["trace_id"] is None
    assert record["span_id"] is None


def test_pii_and_secrets_are_scrubbed_from_message_and_extras(logs: LogStream) -> None:
    logger.bind(password="hunter2", phone_number="+2250701020304", display_name="Awa Koné").warning(
        "login for +2250701020304 with token {}", JWT
    )
    logger.info("ctx", details={"note": "call 0701020304", "nested": {"refresh_token": "rt-secret"}})
    text = logs.text()
    for leaked in ("hunter2", "2250701020304", "0701020304", "Awa Koné", JWT, "rt-secret"):
        assert leaked not in text
    first, second = logs.records()
    assert first["password"] == first["phone_number"] == first["display_name"] == "[REDACTED]"
    assert first["message"] == "login for [REDACTED:number] with token [REDACTED:jwt]"
    assert second["details"] == {"note": "call [REDACTED:number]", "nested": {"refresh_token": "[REDACTED]"}}


def test_uuids_survive_scrubbing(logs: LogStream) -> None:
    payment_id = "01936b2c-7d8e-7a1b-9c2d-123456789012"
    logger.info("payment {} settled", payment_id, wallet_id=payment_id)
    [record] = logs.records()
    assert record["message"] == f"payment {payment_id} settled"
    assert record["wallet_id"] == payment_id


def test_a_phone_number_sent_as_correlation_id_is_scrubbed(logs: LogStream) -> None:
    with correlation_scope("2250701020304"):
        logger.info("hello")
    assert "2250701020304" not in logs.text()


def test_exceptions_are_scrubbed_and_show_no_local_variables(logs: LogStream) -> None:
    def fail(phone: str) -> None:
        secret_local = "local-secret-value"  # noqa: F841 (must not appear: diagnose is off)
        raise ValueError(f"unknown subscriber {phone}")

    try:
        fail("+2250701020304")
    except ValueError:
        logger.exception("provider call failed")
    [record] = logs.records()
    assert "ValueError: unknown subscriber [REDACTED:number]" in record["exception"]
    assert "2250701020304" not in logs.text()
    assert "local-secret-value" not in logs.text()


def test_standard_library_logging_is_bridged_and_scrubbed(logs: LogStream) -> None:
    with correlation_scope("corr-stdlib-1"):
        logging.getLogger("uvicorn.error").warning("client +2250701020304 disconnected")
    [record] = logs.records()
    assert record["logger"] == "uvicorn.error"
    assert record["level"] == "WARNING"
    assert record["message"] == "client [REDACTED:number] disconnected"
    assert record["correlation_id"] == "corr-stdlib-1"


def test_uvicorn_access_lines_are_silenced(logs: LogStream) -> None:
    logging.getLogger("uvicorn.access").info('1.2.3.4 - "GET /v1/users?phone=0701020304 HTTP/1.1" 200')
    assert logs.text() == ""


def test_warnings_are_logged(logs: LogStream) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)  # pytest's own warning capture replaces the hook per test
        warnings.warn("legacy setting used", DeprecationWarning, stacklevel=1)
    assert any("legacy setting used" in record["message"] for record in logs.records())


def test_level_filters_records(logs: LogStream) -> None:
    stream = io.StringIO()
    configure_logging(level="warning", json=True, sink=stream)
    logger.info("dropped")
    logger.warning("kept")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["kept"]
    assert logs.text() == ""  # reconfiguring replaced the previous Kora sink


def test_text_format_for_development(logs: LogStream) -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", json=False, sink=stream)
    with correlation_scope("corr-text-123"):
        logger.info("ready", port=8000, password="x")
    line = stream.getvalue()
    assert "| INFO     | corr-text-123 |" in line
    assert "ready | port=8000 password=[REDACTED]" in line


def test_service_name_field() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", json=True, sink=stream, service="kora-core")
    try:
        logger.info("up")
        assert json.loads(stream.getvalue())["service"] == "kora-core"
    finally:
        from kora.observability.testing import unconfigure_logging

        unconfigure_logging()


def test_capture_logs_sees_scrubbed_production_lines(logs: LogStream) -> None:
    with capture_logs() as lines:
        with correlation_scope("corr-capture-1"):
            logger.debug("otp sent to +2250701020304", password="pw")
        logging.getLogger("sqlalchemy.engine").warning("pool overflow")
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["correlation_id"] == "corr-capture-1"
    assert "2250701020304" not in lines[0]
    assert first["password"] == "[REDACTED]"
    assert json.loads(lines[1])["logger"] == "sqlalchemy.engine"
    logger.info("after the block")
    assert len(lines) == 2


def test_capture_logs_survives_reconfiguration() -> None:
    with capture_logs() as lines:
        configure_logging(level="INFO", json=True, sink=io.StringIO())
        logger.info("still captured")
    from kora.observability.testing import unconfigure_logging

    unconfigure_logging()
    assert [json.loads(line)["message"] for line in lines] == ["still captured"]
