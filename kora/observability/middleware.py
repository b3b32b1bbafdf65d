"""The HTTP edge of observability, as one pure ASGI middleware (no BaseHTTPMiddleware: it
costs a task and a memory stream per request).

Per HTTP request it: adopts or issues the correlation id; continues the caller's W3C trace
in a SERVER span; counts and times the request by route template; returns
``X-Correlation-ID`` and the security headers on every response; writes one access line
(method, route template, status, duration; never the path, query string or headers).

Add it as the application's user middleware (``app.add_middleware(ObservabilityMiddleware,
metrics=...)``, added last so it is the outermost one): an exception no handler mapped is
logged with its traceback, recorded on the span and answered here with a 500 problem that
carries the correlation id, so Starlette's ServerErrorMiddleware never has to answer it.
FastAPI's own native telemetry must be off (``FastAPI(telemetry=fastapi_telemetry_off())``):
its SERVER span would duplicate this one and it records the raw path and query string.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Collection, Iterable
from time import perf_counter

from fastapi.telemetry import TelemetryConfig
from loguru import logger
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kora.observability.correlation import (
    is_valid_correlation_id,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from kora.observability.metrics import UNMATCHED_ROUTE, HttpMetrics
from kora.observability.problems import PROBLEM_CONTENT_TYPE, problem_type
from kora.observability.scrubbing import scrub
from kora.observability.tracing import extract_context_from_asgi_headers, get_tracer

_TRACER_NAME = "kora.http"
_CORRELATION_HEADER = b"x-correlation-id"
_CLIENT_CLOSED_REQUEST = 499  # nginx's convention: the request ended before any response
DEFAULT_HSTS_MAX_AGE = 63_072_000  # two years


def fastapi_telemetry_off() -> TelemetryConfig:
    """``FastAPI(telemetry=...)`` settings that turn FastAPI's native OpenTelemetry off.

    Once a tracer provider is configured, FastAPI otherwise opens its own SERVER span per
    request (a second trace next to this middleware's) with the raw path and query string
    as attributes, which can carry phone numbers."""
    return {"tracing": False, "metrics": False, "logs": False}


def security_headers(*, hsts_max_age: int | None = DEFAULT_HSTS_MAX_AGE) -> list[tuple[bytes, bytes]]:
    """The headers every API response carries (raw ASGI form). ``hsts_max_age=None`` leaves
    out Strict-Transport-Security (plain-HTTP development setups)."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
    ]
    if hsts_max_age is not None:
        headers.append((b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode()))
    return headers


class ObservabilityMiddleware:
    """Correlation id, SERVER span, RED metrics, access log and security headers for every
    HTTP request. Lifespan and WebSocket traffic pass through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics,
        tracer_provider: trace.TracerProvider | None = None,
        add_security_headers: bool = True,
        hsts_max_age: int | None = DEFAULT_HSTS_MAX_AGE,
        access_log: bool = True,
        access_log_exclude: Collection[str] = (),
    ) -> None:
        """``access_log_exclude``: route templates (e.g. ``/metrics``) that get no access
        line; they are still counted and traced."""
        self.app = app
        self._metrics = metrics
        self._tracer = (
            tracer_provider.get_tracer("kora.http") if tracer_provider is not None else get_tracer("kora.http")
        )
        self._headers = security_headers(hsts_max_age=hsts_max_age) if add_security_headers else []
        self._access_log = access_log
        self._access_log_exclude = frozenset(access_log_exclude)
        self._warned_about_fastapi_telemetry = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_headers = scope.get("headers") or ()
        correlation_id = _correlation_id_from(request_headers)
        correlation_header = (_CORRELATION_HEADER, correlation_id.encode("ascii"))
        method: str = scope.get("method", "GET")
        mount_root = scope.get("root_path", "")
        parent = extract_context_from_asgi_headers(request_headers)
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
                "kora.correlation_id": correlation_id,
            },
        )
        correlation_token = set_correlation_id(correlation_id)
        context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        # FastAPI's native telemetry (see fastapi_telemetry_off) skips a request whose scope
        # already has this key: that covers apps wrapped from the outside; inside the app it
        # has already run, so say so once.
        if scope.setdefault("fastapi.telemetry", None) is not None and not self._warned_about_fastapi_telemetry:
            self._warned_about_fastapi_telemetry = True
            logger.warning(
                "FastAPI native telemetry is on: requests get a second SERVER span carrying the raw "
                "path and query string; build the app with telemetry=fastapi_telemetry_off()"
            )
        status = _CLIENT_CLOSED_REQUEST
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = self._response_headers(message.get("headers", ()), correlation_header)
            await send(message)

        self._metrics.http_request_started()
        error: Exception | None = None
        try:
            await self.app(scope, receive, send_with_headers)
            if not response_started:
                logger.error("the application returned without answering {method}", method=method)
                status = await _answer_internal_error(send_with_headers, correlation_id)
        except Exception as exc:
            error = exc
            logger.opt(exception=exc).error(
                "unhandled {error_type} while handling {method} {route}",
                error_type=type(exc).__qualname__,
                method=method,
                route=_route_template(scope, mount_root),
            )
            if response_started:
                raise  # too late for a 500: the server will drop the connection
            # Answered and handled here (logged, traced, counted as a 500) rather than
            # re-raised to Starlette's ServerErrorMiddleware, which knows nothing of ids.
            status = await _answer_internal_error(send_with_headers, correlation_id)
        finally:
            seconds = perf_counter() - started
            route = _route_template(scope, mount_root)
            span_context = span.get_span_context()
            trace_id = format(span_context.trace_id, "032x") if span_context.trace_flags.sampled else None
            self._metrics.observe_http(method, route, status, seconds, trace_id)
            self._metrics.http_request_finished()
            if self._access_log and route not in self._access_log_exclude:
                logger.log(
                    "ERROR" if status >= 500 else "INFO",
                    "{method} {route} {status} {duration_ms}ms",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(seconds * 1000, 1),
                )
            _finish_span(span, method, route, status, error)
            otel_context.detach(context_token)
            reset_correlation_id(correlation_token)

    def _response_headers(
        self, headers: Iterable[tuple[bytes, bytes]], correlation_header: tuple[bytes, bytes]
    ) -> list[tuple[bytes, bytes]]:
        merged = [(name, value) for name, value in headers if name.lower() != _CORRELATION_HEADER]
        present = {name.lower() for name, _ in merged}
        merged.append(correlation_header)
        # The application's own choice wins (e.g. a cacheable public document).
        merged.extend(header for header in self._headers if header[0] not in present)
        return merged


def _correlation_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == _CORRELATION_HEADER:
            candidate = value.decode("latin-1")
            return candidate if is_valid_correlation_id(candidate) else new_correlation_id()
    return new_correlation_id()


def _route_template(scope: Scope, mount_root: str) -> str:
    """The matched route's path template, with the prefix of any Mount it sits under.

    Starlette's router records the matched route in ``scope["route"]`` and a Mount extends
    ``scope["root_path"]``, both in place, so they are readable once the app has returned.
    """
    path_format = getattr(scope.get("route"), "path_format", None)
    if not isinstance(path_format, str):
        return UNMATCHED_ROUTE
    root_path: str = scope.get("root_path", "")
    prefix = root_path[len(mount_root) :] if root_path.startswith(mount_root) else ""
    return prefix + path_format


def _finish_span(span: trace.Span, method: str, route: str, status: int, error: BaseException | None) -> None:
    if route != UNMATCHED_ROUTE:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if error is not None:
        # Exception text can carry user input: export it scrubbed, like the logs.
        span.record_exception(
            error,
            attributes={
                "exception.message": scrub(str(error)),
                "exception.stacktrace": scrub("".join(traceback.format_exception(error))),
            },
        )
    if status >= 500 or error is not None:
        span.set_attribute("error.type", type(error).__qualname__ if error is not None else str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


async def _answer_internal_error(send: Send, correlation_id: str) -> int:
    """Send the RFC 9457 problem for an unexpected failure (same shape as kora.http's
    problems: ``code`` ``internal_error`` and the correlation id to quote). Returns 500."""
    body = json.dumps(
        {
            "type": problem_type("internal_error"),
            "title": "Internal error",
            "status": 500,
            "code": "internal_error",
            "detail": "an internal error occurred; quote the correlation id",
            "correlation_id": correlation_id,
        },
        separators=(",", ":"),
    ).encode()
    with contextlib.suppress(Exception):  # the client may be gone; the failure is logged anyway
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
    return 500
