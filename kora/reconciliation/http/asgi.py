"""ASGI entrypoint for uvicorn (`kora recon serve`, or
`uvicorn --factory kora.reconciliation.http.asgi:build`)."""

from __future__ import annotations

from fastapi import FastAPI

from kora.observability import configure_logging, configure_tracing
from kora.reconciliation.http.app import build_services, create_app
from kora.reconciliation.http.settings import ReconApiSettings


def build() -> FastAPI:
    settings = ReconApiSettings.from_env()
    configure_logging(level=settings.log_level, json=settings.log_json, service="kora-recon")
    configure_tracing(service_name="kora-recon", exporter=settings.otel_exporter, endpoint=settings.otel_endpoint)
    return create_app(build_services(settings))
