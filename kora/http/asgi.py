"""ASGI entrypoint for uvicorn (`kora serve`, or `uvicorn --factory kora.http.asgi:build`)."""

from __future__ import annotations

from fastapi import FastAPI

from kora.bootstrap import Kora
from kora.http.app import create_app
from kora.observability import TelemetrySettings, configure_telemetry, instrument_engine
from kora.platform.settings import Settings


def build() -> FastAPI:
    settings = Settings.from_env()
    configure_telemetry(TelemetrySettings.from_env("kora-core"))
    kora = Kora(settings)
    instrument_engine(kora.engine)
    return create_app(kora)
