"""One call per process to set up its telemetry from the environment: JSON logs, traces and
shipped logs, so every Kora process (API, relay, workers, reconciliation, simulator) reads the
same variables the same way.

    KORA_LOG_LEVEL               INFO        minimum level logged (and shipped)
    KORA_LOG_JSON                true        one JSON object per line on standard error
    KORA_OTEL_EXPORTER           none        traces: none | console | otlp
    KORA_LOG_EXPORTER            none        logs shipped: none | otlp
    OTEL_EXPORTER_OTLP_ENDPOINT  -           the collector, e.g. http://otel-collector:4318
    KORA_OTEL_SAMPLE_RATIO       1.0         share of new root traces sampled
    OTEL_SERVICE_NAME            per process the name traces and shipped logs are filed under
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider

from kora.observability.log_shipping import LOG_EXPORTERS, configure_log_shipping
from kora.observability.logging import configure_logging
from kora.observability.tracing import TRACE_EXPORTERS, configure_tracing

_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, kw_only=True)
class TelemetrySettings:
    """How a process logs, traces and ships its logs."""

    service_name: str
    log_level: str = "INFO"
    log_json: bool = True
    trace_exporter: str = "none"
    log_exporter: str = "none"
    otlp_endpoint: str | None = None
    sample_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.trace_exporter not in TRACE_EXPORTERS:
            raise ValueError(f"unknown trace exporter {self.trace_exporter!r}; expected one of {TRACE_EXPORTERS}")
        if self.log_exporter not in LOG_EXPORTERS:
            raise ValueError(f"unknown log exporter {self.log_exporter!r}; expected one of {LOG_EXPORTERS}")
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ValueError("KORA_OTEL_SAMPLE_RATIO must be between 0 and 1")

    @classmethod
    def from_env(
        cls, service_name: str, env: Mapping[str, str] | None = None, *, log_level: str | None = None
    ) -> TelemetrySettings:
        """The settings of a process named ``service_name`` (``OTEL_SERVICE_NAME`` overrides it,
        so one image runs as several named services); ``log_level`` overrides KORA_LOG_LEVEL."""
        env = os.environ if env is None else env
        return cls(
            service_name=env.get("OTEL_SERVICE_NAME") or service_name,
            log_level=log_level or env.get("KORA_LOG_LEVEL", "INFO"),
            log_json=env.get("KORA_LOG_JSON", "true").strip().lower() not in _FALSE,
            trace_exporter=env.get("KORA_OTEL_EXPORTER", "none"),
            log_exporter=env.get("KORA_LOG_EXPORTER", "none"),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            sample_ratio=float(env.get("KORA_OTEL_SAMPLE_RATIO", "1.0")),
        )


@dataclass(frozen=True)
class Telemetry:
    """The providers :func:`configure_telemetry` built (both flush at process exit)."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider | None


def configure_telemetry(settings: TelemetrySettings) -> Telemetry:
    """Configure logging, then tracing, then log shipping, as ``settings`` say (settings with an
    unknown exporter cannot be built, so nothing is half-configured by a typo)."""
    configure_logging(level=settings.log_level, json=settings.log_json, service=settings.service_name)
    tracer_provider = configure_tracing(
        service_name=settings.service_name,
        exporter=settings.trace_exporter,
        endpoint=settings.otlp_endpoint,
        sample_ratio=settings.sample_ratio,
    )
    logger_provider = configure_log_shipping(
        exporter=settings.log_exporter,
        service_name=settings.service_name,
        level=settings.log_level,
        endpoint=settings.otlp_endpoint,
    )
    return Telemetry(tracer_provider, logger_provider)
