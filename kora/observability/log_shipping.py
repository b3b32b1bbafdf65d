"""Log shipping: every record Kora logs also leaves the process as an OpenTelemetry log record
(OTLP/HTTP), for a central store (Loki behind an OpenTelemetry Collector in the compose stack).

The shipping sink is one more loguru sink. loguru runs the record patcher (correlation and trace
ids, PII and secret scrubbing: :mod:`kora.observability.logging`) before any sink, so what is
shipped is exactly what the JSON line on standard error says — never the raw message. Each OTLP
record carries the trace and span ids of the span it was logged in (Grafana jumps from a log line
to its trace), the severity, the scrubbed message as body and the scrubbed fields as attributes.

Export is batched on a background thread; what that thread (the exporter and its HTTP client)
logs is not shipped again, so an unreachable collector cannot feed on its own error messages.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from loguru import logger
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.util.types import AttributeValue

from kora.observability.logging import LOGGER_NAME_FIELD, format_exception, install_log_scrubbing

if TYPE_CHECKING:
    from loguru import Message, Record
    from opentelemetry._logs import Logger as OtelLogger

LogExporter = Literal["none", "otlp"]
LOG_EXPORTERS = ("none", "otlp")

_SEVERITY = {
    "TRACE": SeverityNumber.TRACE,
    "DEBUG": SeverityNumber.DEBUG,
    "INFO": SeverityNumber.INFO,
    "SUCCESS": SeverityNumber.INFO2,
    "WARNING": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
    "CRITICAL": SeverityNumber.FATAL,
}
# Records from these loggers or threads are the shipping machinery talking about itself.
_OWN_LOGGERS = ("opentelemetry", "urllib3", "requests")
_OWN_THREAD_PREFIX = "OtelBatch"
_ID_FIELDS = frozenset({"trace_id", "span_id", LOGGER_NAME_FIELD})
_INT64 = 2**63

_handler_id: int | None = None
_provider: LoggerProvider | None = None


def configure_log_shipping(
    *,
    exporter: LogExporter | str,
    service_name: str,
    level: str = "INFO",
    endpoint: str | None = None,
    service_version: str | None = None,
    processor: LogRecordProcessor | None = None,
) -> LoggerProvider | None:
    """Ship every record at ``level`` or above to an OTLP/HTTP log receiver; ``None`` when
    ``exporter`` is ``"none"`` (nothing is shipped, the previous shipping is stopped).

    ``exporter="otlp"`` batches records to ``endpoint``: a collector base URL such as
    ``http://otel-collector:4318`` (``/v1/logs`` is appended) or the full ``.../v1/logs`` URL;
    ``None`` lets the OTEL_EXPORTER_OTLP_* variables decide. ``processor`` replaces the batching
    OTLP processor (tests give a synchronous one).

    Safe to call again: the previous provider is flushed and shut down first. The provider
    flushes at process exit; call :func:`unconfigure_log_shipping` to stop earlier.
    """
    if exporter not in LOG_EXPORTERS:
        raise ValueError(f"unknown log exporter {exporter!r}; expected one of {LOG_EXPORTERS}")
    level_no = logger.level(level.upper()).no  # ValueError for an unknown level name
    unconfigure_log_shipping()
    if exporter == "none":
        return None
    global _handler_id, _provider
    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    if service_version is not None:
        attributes[SERVICE_VERSION] = service_version
    provider = LoggerProvider(resource=Resource.create(attributes))
    if processor is None:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        processor = BatchLogRecordProcessor(OTLPLogExporter(endpoint=logs_url(endpoint)))
    provider.add_log_record_processor(processor)
    install_log_scrubbing()
    _handler_id = logger.add(
        OtlpLogSink(provider.get_logger("kora")),
        level=level_no,
        format="{message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
        catch=True,  # a shipping failure never breaks the code that logged
    )
    _provider = provider
    return provider


def unconfigure_log_shipping() -> None:
    """Stop shipping: remove the sink, flush and shut down the provider. Idempotent."""
    global _handler_id, _provider
    if _handler_id is not None:
        with contextlib.suppress(ValueError):  # already removed
            logger.remove(_handler_id)
        _handler_id = None
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def logs_url(endpoint: str | None) -> str | None:
    """The OTLP/HTTP logs URL for a collector base URL (or a full URL, kept as given)."""
    if endpoint is None:
        return None
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/logs"
    return endpoint


class OtlpLogSink:
    """A loguru sink emitting each (already scrubbed) record as an OpenTelemetry log record."""

    def __init__(self, otel_logger: OtelLogger) -> None:
        self._logger = otel_logger

    def __call__(self, message: Message) -> None:
        record = message.record
        extra = record["extra"]
        name = str(extra.get(LOGGER_NAME_FIELD) or record["name"] or "")
        if name.startswith(_OWN_LOGGERS) or record["thread"].name.startswith(_OWN_THREAD_PREFIX):
            return
        moment = record["time"]
        self._logger.emit(
            timestamp=int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000,
            observed_timestamp=time.time_ns(),
            context=_trace_context(extra.get("trace_id"), extra.get("span_id")),
            severity_number=_SEVERITY.get(record["level"].name, SeverityNumber.UNSPECIFIED),
            severity_text=record["level"].name,
            body=record["message"],
            attributes=_attributes(record, name),
        )


def _attributes(record: Record, name: str) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "logger": name,
        "code.function": record["function"],
        "code.lineno": record["line"],
    }
    for key, value in record["extra"].items():
        if key in _ID_FIELDS or value is None:
            continue
        attributes[str(key)] = _attribute_value(value)
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        # The type name and the scrubbed traceback; never the raw exception message.
        attributes["exception.type"] = exception.type.__name__
        attributes["exception.stacktrace"] = format_exception(exception)
    return attributes


def _attribute_value(value: object) -> AttributeValue:
    """OTLP attributes hold strings, booleans, 64-bit ints and floats: anything else (the
    already-scrubbed mappings and lists of a structured field) becomes its JSON text."""
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def _trace_context(trace_id: object, span_id: object) -> otel_context.Context:
    """The context naming the record's span: the ids the patcher put on the record (the same
    ones the JSON line shows), with the current span's sampling flag when it is that span.
    An empty context, so no ids, when the record has none."""
    if not isinstance(trace_id, str) or not isinstance(span_id, str):
        return otel_context.Context()
    try:
        trace_int, span_int = int(trace_id, 16), int(span_id, 16)
    except ValueError:
        return otel_context.Context()
    current = trace.get_current_span().get_span_context()
    flags = (
        current.trace_flags
        if (current.trace_id, current.span_id) == (trace_int, span_int)
        else trace.TraceFlags(trace.TraceFlags.SAMPLED)
    )
    span_context = trace.SpanContext(trace_int, span_int, is_remote=False, trace_flags=flags)
    if not span_context.is_valid:
        return otel_context.Context()
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), otel_context.Context())
