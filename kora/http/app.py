"""The FastAPI application factory (entrypoint layer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from kora import __version__
from kora.bootstrap import Kora
from kora.http.container import Services
from kora.http.problems import install_problem_handlers
from kora.http.routes import (
    auth,
    cards,
    controls,
    events,
    kpis,
    merchant,
    money,
    ops,
    risk,
    service,
    settlement,
    webhooks,
)
from kora.identity import IdentityError
from kora.kernel import InvalidAmount, UnknownCurrency
from kora.kpis import KpiService
from kora.ledger import LedgerError
from kora.observability import ObservabilityMiddleware, fastapi_telemetry_off
from kora.observability.problems import declare_problem_schema
from kora.operations import ControlError
from kora.payments import PaymentError
from kora.providers import NoProviderAvailable

API_DESCRIPTION = """
Kora's payment API: wallets, P2P transfers, cash-in and cash-out on a double-entry ledger.

* Amounts are integers in the currency's minor units (XOF has none).
* Every money-moving POST requires an `Idempotency-Key` header; a retry with the same key and
  body replays the first answer with `Idempotent-Replayed: true`.
* Every response carries `X-Correlation-ID` (yours if well-formed). Errors are RFC 9457
  `application/problem+json` with a stable `code`.
* Authenticate with `Authorization: Bearer <access token>` and the `X-Device-ID` the token was
  issued to.
* The service API (`/v1/service/...`) is for other Kora services only: it takes a service token
  (a short-lived EdDSA JWT the service signs, with scopes; ADR 0023), never a user's token.
* Transfers, cash-outs and refunds also need `X-Request-Timestamp` (Unix seconds) and
  `X-Request-Nonce` (a new random value per request): a stale timestamp or a nonce already
  used in the session is refused. A retry sends a fresh pair with the same `Idempotency-Key`.
"""


def create_app(kora: Kora, *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the app around an already-composed `Kora`. With `manage_lifecycle`, the app disposes
    of it on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        sweeper = asyncio.create_task(kora.run_sweeper(stop), name="pending-payment-sweeper")
        # Keeps the operational controls' cache warm, so payment requests never wait on a read.
        controls_refresher = asyncio.create_task(kora.controls.run_refresher(stop), name="controls-refresher")
        # The embedded default runs the relay and the consumers here; production runs
        # `kora relay` and `kora worker` processes instead (KORA_EVENTS_IN_PROCESS=false).
        pipeline = (
            asyncio.create_task(kora.events.run_in_process(stop), name="event-pipeline")
            if kora.settings.events_in_process
            else None
        )
        try:
            yield
        finally:
            stop.set()
            await sweeper
            await controls_refresher
            if pipeline is not None:
                await pipeline
            if manage_lifecycle:
                await kora.aclose()

    app = FastAPI(
        title="Kora payment API",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Kora's own middleware traces requests (by route template, without the query string).
        telemetry=fastapi_telemetry_off(),
    )
    exposed: Services = kora  # the composition root must offer what the routes use
    app.state.kora = exposed
    app.state.kpis = KpiService(kora.engine, kora.clock, registry=kora.registry)
    install_problem_handlers(
        app,
        (PaymentError, LedgerError, IdentityError, InvalidAmount, UnknownCurrency, ControlError, NoProviderAvailable),
    )
    app.include_router(auth.router)
    app.include_router(money.router)
    app.include_router(merchant.router)
    app.include_router(ops.router)
    app.include_router(settlement.router)
    app.include_router(webhooks.router)
    app.include_router(cards.router)
    app.include_router(events.router)
    app.include_router(service.router)
    app.include_router(risk.router)
    app.include_router(kpis.router)
    app.include_router(controls.router)
    if kora.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(kora.settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Correlation-ID",
                "X-Device-ID",
                "X-Request-Timestamp",
                "X-Request-Nonce",
            ],
            expose_headers=["X-Correlation-ID", "Idempotent-Replayed"],
        )
    app.add_middleware(ObservabilityMiddleware, metrics=kora.metrics)
    declare_problem_schema(app)
    return app
