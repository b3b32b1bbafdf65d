"""A real OTLP/HTTP receiver for tests: a small HTTP server that accepts POST /v1/logs and
/v1/traces and decodes the protobuf bodies with the OTLP protocol's own message classes
(opentelemetry-proto), as an OpenTelemetry Collector does, keeping the raw bytes too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord


@dataclass
class Received:
    """One decoded export request and the raw bytes it came as."""

    path: str
    raw: bytes
    message: Any


@dataclass
class OtlpReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)

    def logs(self) -> list[tuple[dict[str, str], LogRecord]]:
        """(resource attributes, record) for every log record received."""
        out = []
        for request in self.requests:
            if request.path != "/v1/logs":
                continue
            for resource_logs in request.message.resource_logs:
                resource = {kv.key: attribute_value(kv.value) for kv in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    out.extend((resource, record) for record in scope_logs.log_records)
        return out

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        out = []
        for request in self.requests:
            if request.path != "/v1/traces":
                continue
            for resource_spans in request.message.resource_spans:
                resource = {kv.key: attribute_value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope_spans.spans)
        return out

    def raw(self) -> bytes:
        return b"".join(request.raw for request in self.requests)


def attribute_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def log_attributes(record: LogRecord) -> dict[str, Any]:
    return {kv.key: attribute_value(kv.value) for kv in record.attributes}


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP (protobuf) receiver on a free local port."""
    received: list[Received] = []
    decoders = {
        "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
        "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path not in decoders or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            request_type, response_type = decoders[self.path]
            message = request_type()
            message.ParseFromString(raw)
            received.append(Received(self.path, raw, message))
            body = response_type().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no access lines on the test's stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OtlpReceiver(url=f"http://127.0.0.1:{server.server_address[1]}", requests=received)
    finally:
        server.shutdown()
        server.server_close()
