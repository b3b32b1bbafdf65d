"""ASGI entrypoint for uvicorn (`kora recon serve`, or
`uvicorn --factory kora.reconciliation.http.asgi:build`)."""

from __future__ import annotations

from fastapi import FastAPI

from kora.observability import TelemetrySettings, configure_telemetry
from kora.reconciliation.http.app import build_services, create_app
from kora.reconciliation.http.settings import ReconApiSettings


def build() -> FastAPI:
    settings = ReconApiSettings.from_env()
    configure_telemetry(TelemetrySettings.from_env("kora-recon"))
    return create_app(build_services(settings))
