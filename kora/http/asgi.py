"""ASGI entrypoint for uvicorn (`kora serve`, or `uvicorn --factory kora.http.asgi:build`)."""

from __future__ import annotations

from fastapi import FastAPI

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.observability import configure_logging, configure_tracing, instrument_engine
from kora.platform.settings import Settings


def build() -> FastAPI:
    settings = Settings.from_env()
    configure_logging(level=settings.log_level, json=settings.log_json)
    configure_tracing(service_name="kora-core", exporter=settings.otel_exporter, endpoint=settings.otel_endpoint)
    kora = Kora(settings)
    instrument_engine(kora.engine)
    return create_app(kora)
