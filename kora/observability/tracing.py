"""OpenTelemetry tracing: provider set-up, SQL instrumentation, W3C context propagation.

OpenTelemetry lets a process set its global tracer provider only once, but the test suite
builds many apps in one process. So the global provider is a thin switch, installed on the
first :func:`configure_tracing` call, that forwards to the SDK provider built by the latest
call. Every call returns its own fresh SDK provider (its own resource, sampler and span
processors), and tracers obtained earlier follow the switch.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from loguru import logger
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

Exporter = Literal["none", "console", "otlp"]
TRACE_EXPORTERS = ("none", "console", "otlp")

AsgiHeaders = Sequence[tuple[bytes, bytes]]


class _SwitchableTracerProvider(trace.TracerProvider):
    """The process-global provider: forwards to ``delegate``, which configure_tracing swaps."""

    def __init__(self, delegate: trace.TracerProvider) -> None:
        self.delegate = delegate

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return _SwitchableTracer(self, instrumenting_module_name, instrumenting_library_version, schema_url, attributes)


class _SwitchableTracer(trace.Tracer):
    """A tracer that always starts spans with the switch's current provider."""

    def __init__(
        self,
        switch: _SwitchableTracerProvider,
        name: str,
        version: str | None,
        schema_url: str | None,
        attributes: Attributes,
    ) -> None:
        self._switch = switch
        self._scope = (name, version, schema_url, attributes)
        self._provider: trace.TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()

    def _current(self) -> trace.Tracer:
        provider = self._switch.delegate
        if provider is not self._provider:
            self._tracer = provider.get_tracer(*self._scope)
            self._provider = provider
        return self._tracer

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self._current().start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # same protocol, stdlib context manager
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        with self._current().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


_switch: _SwitchableTracerProvider | None = None
_instrumented_engines: weakref.WeakSet[Engine] = weakref.WeakSet()  # not ids: those get reused


def configure_tracing(
    *,
    service_name: str,
    exporter: Exporter | str,
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
    service_version: str | None = None,
) -> TracerProvider:
    """Build an SDK tracer provider and make it the one the global API hands out.

    ``exporter``: ``"none"`` (spans still exist, so trace ids reach logs and exemplars, but
    nothing is exported), ``"console"`` (stdout, for development) or ``"otlp"`` (OTLP/HTTP,
    batched; ``endpoint`` is the collector base URL such as ``http://tempo:4318`` or the full
    ``.../v1/traces`` URL; ``None`` lets the OTEL_EXPORTER_OTLP_* variables decide).
    ``sample_ratio`` below 1 samples new root traces; a caller's sampling decision is kept.

    Safe to call repeatedly (tests do): each call returns a new provider, which the global
    one then forwards to. Call ``provider.shutdown()`` at process exit to flush spans.
    """
    if exporter not in TRACE_EXPORTERS:
        raise ValueError(f"unknown trace exporter {exporter!r}; expected one of {TRACE_EXPORTERS}")
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError("sample_ratio must be between 0 and 1")
    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    if service_version is not None:
        attributes[SERVICE_VERSION] = service_version
    sampler = ParentBased(ALWAYS_ON if sample_ratio >= 1.0 else TraceIdRatioBased(sample_ratio))
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(endpoint))))
    _install_globally(provider)
    return provider


def _traces_url(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def _install_globally(provider: TracerProvider) -> None:
    global _switch
    if _switch is not None:
        _switch.delegate = provider
        return
    _switch = _SwitchableTracerProvider(provider)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(_switch)
    else:
        logger.warning(
            "a global tracer provider was set outside Kora; only tracers from "
            "kora.observability.get_tracer and explicit tracer_provider arguments use Kora's"
        )


_TRACE_CONTEXT = TraceContextTextMapPropagator()


def get_tracer(name: str) -> trace.Tracer:
    """A tracer for ``name`` (a module or component); follows later configure_tracing calls."""
    if _switch is not None:
        return _switch.get_tracer(name)
    return trace.get_tracer(name)


def current_trace_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span as lowercase hex, or (None, None)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def instrument_engine(engine: AsyncEngine, *, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every SQL statement the engine runs (a CLIENT span per statement, the SQL text
    without parameter values). Idempotent per engine.

    Uses the instrumentation's per-engine tracer rather than ``SQLAlchemyInstrumentor``,
    which can be enabled once per process and also patches ``create_engine`` globally.
    """
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as instrumentation_version

    sync_engine = engine.sync_engine
    if sync_engine in _instrumented_engines:
        return
    scope = "opentelemetry.instrumentation.sqlalchemy"
    tracer = trace.get_tracer(scope, instrumentation_version, tracer_provider)
    connections_usage = metrics.get_meter(scope, instrumentation_version).create_up_down_counter(
        name="db.client.connections.usage",
        unit="connections",
        description="The number of connections that are currently in state described by the state attribute.",
    )
    EngineTracer(tracer, sync_engine, connections_usage)  # type: ignore[no-untyped-call]
    _instrumented_engines.add(sync_engine)


class _AsgiHeadersGetter(Getter[AsgiHeaders]):
    """Reads propagation fields straight from ASGI's raw (lower-cased) header list."""

    def get(self, carrier: AsgiHeaders, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: AsgiHeaders) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_ASGI_HEADERS_GETTER = _AsgiHeadersGetter()


def extract_context_from_asgi_headers(headers: AsgiHeaders) -> Context:
    """The caller's trace context (W3C ``traceparent``/``tracestate`` and baggage, or what
    OTEL_PROPAGATORS selects) from an ASGI scope's headers."""
    return propagate.extract(headers, getter=_ASGI_HEADERS_GETTER)


def extract_context(carrier: Mapping[str, str]) -> Context:
    """The trace context stored in a plain mapping (an outbox row, a bus message's headers)."""
    return propagate.extract(carrier)


def inject_trace_context(carrier: MutableMapping[str, str]) -> None:
    """Write only the W3C trace context (`traceparent`, `tracestate`) into ``carrier``: what a
    stored, signed artefact (an outbox event) may carry. Baggage is left out on purpose — a
    client can put anything in it, a phone number included."""
    _TRACE_CONTEXT.inject(carrier)
    if len(carrier.get("tracestate", "")) > 512:
        carrier.pop("tracestate")


def inject_context(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context (``traceparent`` ...) into ``carrier`` so the next hop
    (an outgoing HTTP call, an outbox row, a bus message) continues the trace."""
    propagate.inject(carrier)
