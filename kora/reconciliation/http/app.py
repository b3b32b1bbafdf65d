"""The reconciliation API's application factory and composition root (`kora recon serve`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from loguru import logger
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from kora import __version__
from kora.kernel import Clock, SystemClock
from kora.observability import ObservabilityMiddleware, fastapi_telemetry_off, instrument_engine
from kora.observability.problems import declare_problem_schema
from kora.platform.db import create_engine
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.report_queries import providers_with_reports
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.composition import build_review
from kora.reconciliation.http import cases
from kora.reconciliation.http.container import ReconServices
from kora.reconciliation.http.problems import install_problem_handlers
from kora.reconciliation.http.routes import ops, reports, results
from kora.reconciliation.http.security import KeySource, RemoteJwks, StaticKeys, UserTokenVerifier, parse_jwks
from kora.reconciliation.http.settings import ReconApiSettings
from kora.reconciliation.metrics import ReconMetrics
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.observed import refresh_risk
from kora.reconciliation.service.ports import CorePayments

API_DESCRIPTION = """
The reconciliation service's API: providers' settlement reports, the results of matching them
against Kora's payments, summaries and exports.

* Authenticate with `Authorization: Bearer <access token>` issued by the core (log in there);
  reading needs `recon_reviewer`, `recon_approver` or `admin`; uploading and matching need
  `recon_reviewer` (they decide what is announced to the core; `admin` reads).
* Amounts are integers in the currency's minor units.
* Every response carries `X-Correlation-ID` (yours if well-formed). Errors are RFC 9457
  `application/problem+json` with a stable `code`.
"""


def build_services(
    settings: ReconApiSettings,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    core: CorePayments | None = None,
) -> ReconServices:
    """Everything the routes use, from settings: the engine (not connected yet), the cipher,
    the key source of the core's access tokens, a metrics registry of the service's own, and
    the review queue (the core reached through its service API, or ``core`` when given)."""
    clock = clock or SystemClock()
    registry = registry or CollectorRegistry()
    engine = create_engine(settings.recon.database_url)
    instrument_engine(engine)
    jwks: RemoteJwks | None = None
    keys: KeySource | None = None
    if settings.core_keys:
        keys = StaticKeys(parse_jwks(settings.core_keys))
    elif settings.core_jwks_url:
        keys = jwks = RemoteJwks(settings.core_jwks_url, ttl_seconds=settings.core_jwks_ttl_seconds)
    else:
        logger.warning(
            "no core keys configured (KORA_RECON_USER_TOKEN_KEYS or KORA_RECON_USER_TOKEN_JWKS_URL): "
            "every authenticated request will be refused"
        )
    metrics = ReconMetrics(registry)
    review = build_review(
        engine, settings.recon, clock=clock, registry=registry, metrics=metrics, review=settings.review, core=core
    )
    return ReconServices(
        settings=settings,
        engine=engine,
        imports=ReportImports(
            SqlReportStore(engine), AesGcmReportCipher.from_setting(settings.recon.report_key), clock
        ),
        verifier=UserTokenVerifier(keys, issuer=settings.core_issuer, audience=settings.core_audience, clock=clock),
        metrics=metrics,
        clock=clock,
        review=review,
        jwks=jwks,
    )


def create_app(services: ReconServices, *, manage_lifecycle: bool = True) -> FastAPI:
    """The app around already-built services; with ``manage_lifecycle`` it closes them on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await _refresh_gauges(services)
        try:
            yield
        finally:
            if manage_lifecycle:
                await services.aclose()

    app = FastAPI(
        title="Kora reconciliation API",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        telemetry=fastapi_telemetry_off(),
    )
    app.state.recon = services
    app.state.case_service = services.review.cases
    install_problem_handlers(app)
    app.include_router(ops.router)
    app.include_router(reports.router)
    app.include_router(results.router)
    app.include_router(cases.router)
    app.add_middleware(ObservabilityMiddleware, metrics=services.metrics, access_log_exclude=("/metrics",))
    declare_problem_schema(app)
    return app


async def _refresh_gauges(services: ReconServices) -> None:
    """The risk gauges from the stored results, so a restarted process does not report nothing
    until the next run; a database not ready yet only delays them (readiness says so)."""
    try:
        async with services.engine.connect() as conn:
            providers = await providers_with_reports(conn)
    except SQLAlchemyError as exc:
        logger.warning("recon risk gauges not loaded at start", error=type(exc).__name__)
        return
    for provider in providers:
        await refresh_risk(services.engine, services.metrics, provider)
