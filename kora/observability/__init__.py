"""Observability: correlation ids, structured scrubbed logs, traces and metrics.

A technical module every other module may use. Nothing is built at import time: the
composition root calls, in order, :func:`configure_telemetry` (or :func:`configure_logging`,
:func:`configure_tracing` and :func:`configure_log_shipping` one by one),
``KoraMetrics(registry)``, :func:`instrument_engine`, then builds the app with
``FastAPI(telemetry=fastapi_telemetry_off())`` and adds :class:`ObservabilityMiddleware` last.
"""

from kora.observability.correlation import (
    CORRELATION_HEADER,
    correlation_scope,
    get_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)
from kora.observability.log_shipping import configure_log_shipping
from kora.observability.logging import configure_logging
from kora.observability.metrics import (
    HTTP_DURATION_BUCKETS,
    UNMATCHED_ROUTE,
    HttpMetrics,
    HttpRedMetrics,
    KoraMetrics,
    render_metrics,
    safe_label,
)
from kora.observability.middleware import ObservabilityMiddleware, fastapi_telemetry_off, security_headers
from kora.observability.scrubbing import is_sensitive_key, scrub, scrub_value
from kora.observability.telemetry import Telemetry, TelemetrySettings, configure_telemetry
from kora.observability.tracing import (
    configure_tracing,
    current_trace_ids,
    extract_context,
    extract_context_from_asgi_headers,
    get_tracer,
    inject_context,
    inject_trace_context,
    instrument_engine,
)

__all__ = [
    "CORRELATION_HEADER",
    "HTTP_DURATION_BUCKETS",
    "UNMATCHED_ROUTE",
    "HttpMetrics",
    "HttpRedMetrics",
    "KoraMetrics",
    "ObservabilityMiddleware",
    "Telemetry",
    "TelemetrySettings",
    "configure_log_shipping",
    "configure_logging",
    "configure_telemetry",
    "configure_tracing",
    "correlation_scope",
    "current_trace_ids",
    "extract_context",
    "extract_context_from_asgi_headers",
    "fastapi_telemetry_off",
    "get_correlation_id",
    "get_tracer",
    "inject_context",
    "inject_trace_context",
    "instrument_engine",
    "is_sensitive_key",
    "is_valid_correlation_id",
    "new_correlation_id",
    "render_metrics",
    "safe_label",
    "scrub",
    "scrub_value",
    "security_headers",
]
