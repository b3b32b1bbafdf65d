from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kora.observability import configure_logging, configure_tracing
from kora.observability.logging import unconfigure_logging


@dataclass
class Tracing:
    provider: TracerProvider
    exporter: InMemorySpanExporter


@dataclass
class LogStream:
    stream: io.StringIO

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """A fresh tracer provider (the one the global API now hands out) recording in memory."""
    provider = configure_tracing(service_name="kora-test", exporter="none")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, exporter)
    provider.shutdown()


@pytest.fixture
def logs() -> Iterator[LogStream]:
    """JSON logging into a string buffer, undone after the test."""
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, sink=stream)
    yield LogStream(stream)
    unconfigure_logging()
