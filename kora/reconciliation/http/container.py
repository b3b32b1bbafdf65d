"""What the reconciliation API's routes use, built once by the composition root (app.py's
build_services): the engine, the import use cases, the token verifier, the metrics, the review
queue and the hooks of every match run."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import Request
from loguru import logger
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.kernel import Clock
from kora.observability import render_metrics
from kora.reconciliation.composition import Review
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.http.security import RemoteJwks, UserTokenVerifier
from kora.reconciliation.http.settings import ReconApiSettings
from kora.reconciliation.metrics import ReconMetrics
from kora.reconciliation.schedules import load_rules
from kora.reconciliation.service.importing import ReportImports
from kora.reconciliation.service.match_run import RuleBook


@dataclass
class ReconServices:
    settings: ReconApiSettings
    engine: AsyncEngine
    imports: ReportImports
    verifier: UserTokenVerifier
    metrics: ReconMetrics
    clock: Clock
    review: Review
    # Each provider's rules (fee schedule, windows), read from its declarative file.
    rules: MatchRules | RuleBook = load_rules
    jwks: RemoteJwks | None = None

    async def database_ready(self) -> bool:
        """The database answers and holds the service's schema."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1 FROM recon_reports WHERE 1 = 0"))
        except Exception as exc:
            logger.warning("recon database not ready", error=type(exc).__name__)
            return False
        return True

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        registry: CollectorRegistry = self.metrics.registry
        return render_metrics(registry, accept)

    async def aclose(self) -> None:
        await self.review.aclose()
        if self.jwks is not None:
            await self.jwks.aclose()
        await self.engine.dispose()


def recon_services(request: Request) -> ReconServices:
    services: ReconServices = request.app.state.recon
    return services
