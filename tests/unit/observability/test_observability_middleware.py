from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kora.observability import (
    KoraMetrics,
    ObservabilityMiddleware,
    fastapi_telemetry_off,
    get_correlation_id,
    is_valid_correlation_id,
    render_metrics,
)
from kora.observability.testing import capture_logs

from .conftest import Tracing

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "strict-transport-security": "max-age=63072000; includeSubDomains",
}


def build_app(metrics: KoraMetrics) -> FastAPI:
    app = FastAPI(telemetry=fastapi_telemetry_off())

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        return {"id": item_id, "correlation_id": get_correlation_id()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("provider said +2250701020304 is unknown")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418)

    @app.get("/public")
    async def public() -> JSONResponse:
        return JSONResponse({}, headers={"Cache-Control": "public, max-age=60"})

    router = APIRouter(prefix="/v1")

    @router.get("/payments/{payment_id}")
    async def payment(payment_id: str) -> dict[str, str]:
        return {"id": payment_id}

    app.include_router(router)
    app.mount("/ops", Starlette(routes=[Route("/jobs/{job}", lambda _r: PlainTextResponse("ok"))]))
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    return app


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(tracing: Tracing, registry: CollectorRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(KoraMetrics(registry))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kora.test") as client:
        yield client


def scrape(registry: CollectorRegistry) -> str:
    return render_metrics(registry, "application/openmetrics-text")[0].decode()


async def test_a_valid_correlation_id_is_kept_and_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/42", headers={"X-Correlation-ID": "caller-chosen-123"})
    assert response.headers["X-Correlation-ID"] == "caller-chosen-123"
    assert response.json()["correlation_id"] == "caller-chosen-123"  # the contextvar, inside the handler


@pytest.mark.parametrize("bad", ["has spaces in it", "x" * 65, "short", "<script>alert(1)</script>"])
async def test_an_invalid_correlation_id_is_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/items/42", headers={"X-Correlation-ID": bad})
    issued = response.headers["X-Correlation-ID"]
    assert issued != bad
    assert is_valid_correlation_id(issued)
    assert response.json()["correlation_id"] == issued


async def test_a_correlation_id_is_issued_when_missing(client: httpx.AsyncClient) -> None:
    first = await client.get("/items/1")
    second = await client.get("/items/1")
    assert is_valid_correlation_id(first.headers["X-Correlation-ID"])
    assert first.headers["X-Correlation-ID"] != second.headers["X-Correlation-ID"]
    assert get_correlation_id() is None  # nothing leaks out of the request


async def test_metrics_use_the_route_template(client: httpx.AsyncClient, registry: CollectorRegistry) -> None:
    await client.get("/items/42")
    await client.get("/items/43?phone=0701020304")
    await client.get("/v1/payments/0701020304")
    await client.get("/ops/jobs/reconcile-2024")
    await client.get("/no/such/path/0701020304")
    text = scrape(registry)
    assert 'kora_http_requests_total{method="GET",route="/items/{item_id}",status="200"} 2.0' in text
    assert 'route="/v1/payments/{payment_id}",status="200"' in text
    assert 'route="/ops/jobs/{job}",status="200"' in text
    assert 'kora_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "/items/42" not in text
    assert "0701020304" not in text


async def test_an_unhandled_error_is_answered_500_with_the_header_and_counted(
    client: httpx.AsyncClient, registry: CollectorRegistry, tracing: Tracing
) -> None:
    with capture_logs() as lines:
        response = await client.get("/boom", headers={"X-Correlation-ID": "corr-boom-1"})
    assert response.status_code == 500
    assert response.headers["X-Correlation-ID"] == "corr-boom-1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert response.json()["correlation_id"] == "corr-boom-1"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert 'kora_http_requests_total{method="GET",route="/boom",status="500"} 1.0' in scrape(registry)
    [span] = tracing.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "RuntimeError"
    [event] = span.events
    assert event.attributes is not None
    assert "2250701020304" not in str(event.attributes["exception.message"])
    records = [json.loads(line) for line in lines]
    assert any("RuntimeError" in record.get("exception", "") for record in records)
    assert all(record["correlation_id"] == "corr-boom-1" for record in records)
    assert "2250701020304" not in "\n".join(lines)


async def test_http_errors_keep_their_status_and_get_the_headers(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    response = await client.get("/teapot")
    assert response.status_code == 418
    assert "X-Correlation-ID" in response.headers
    assert 'route="/teapot",status="418"' in scrape(registry)


async def test_the_callers_trace_is_continued(client: httpx.AsyncClient, tracing: Tracing) -> None:
    await client.get("/items/42", headers={"traceparent": TRACEPARENT})
    [span] = tracing.exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_SPAN_ID
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET


async def test_the_duration_histogram_links_to_the_trace(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    await client.get("/items/42", headers={"traceparent": TRACEPARENT})
    assert f'# {{trace_id="{TRACE_ID}"}}' in scrape(registry)


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for path in ("/items/1", "/nowhere"):
        response = await client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value


async def test_the_applications_own_cache_policy_wins(client: httpx.AsyncClient) -> None:
    response = await client.get("/public")
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_one_access_line_without_path_or_query(client: httpx.AsyncClient, tracing: Tracing) -> None:
    with capture_logs() as lines:
        await client.get(
            "/items/42?phone=%2B2250701020304",
            headers={"X-Correlation-ID": "corr-access-1", "Authorization": "x"},
        )
    [line] = lines
    record = json.loads(line)
    assert record["message"].startswith("GET /items/{item_id} 200 ")
    assert record["route"] == "/items/{item_id}"
    assert record["status"] == 200
    assert record["duration_ms"] >= 0
    assert record["correlation_id"] == "corr-access-1"
    assert record["trace_id"] is not None
    assert "/items/42" not in line
    assert "phone" not in line
    assert "Authorization" not in line


async def test_fastapi_native_telemetry_stays_out_when_wrapped_from_outside(
    tracing: Tracing, registry: CollectorRegistry
) -> None:
    app = FastAPI()  # native telemetry left on

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    wrapped = ObservabilityMiddleware(app, metrics=KoraMetrics(registry))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as client:
        await client.get("/items/1?phone=0701020304")
    [span] = tracing.exporter.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert "0701020304" not in str(span.attributes)


async def test_non_http_traffic_passes_through(registry: CollectorRegistry) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    middleware = ObservabilityMiddleware(app, metrics=KoraMetrics(registry))

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.startup"}

    async def send(_message: object) -> None:
        raise AssertionError("nothing should be sent")

    await middleware({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]
    assert "kora_http_requests_total{" not in scrape(registry)


async def test_an_app_that_never_answers_gets_a_500(registry: CollectorRegistry) -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    middleware = ObservabilityMiddleware(silent, metrics=KoraMetrics(registry))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://t") as client:
        response = await client.get("/x")
    assert response.status_code == 500
    assert "X-Correlation-ID" in response.headers


async def test_security_headers_can_be_tuned(registry: CollectorRegistry) -> None:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", ok)])
    middleware = ObservabilityMiddleware(app, metrics=KoraMetrics(registry), hsts_max_age=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://t") as client:
        response = await client.get("/")
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"
