"""The simulator's app factory. All state lives in one :class:`SimulatorState` held by the
app (``app.state.simulator``); nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from loguru import logger

from kora.kernel import Clock
from kora.observability import ObservabilityMiddleware, fastapi_telemetry_off
from kora.simulator import admin, card, momo, wave
from kora.simulator.config import ApiStyle, SimulatorConfig
from kora.simulator.engine import SimulatorState
from kora.simulator.outage import OutageMiddleware

_ROUTERS = {ApiStyle.MOMO: momo.build_router, ApiStyle.WAVE: wave.build_router, ApiStyle.CARD: card.build_router}
_RENDERERS = {ApiStyle.MOMO: momo.render, ApiStyle.WAVE: wave.render, ApiStyle.CARD: card.render}


def create_simulator_app(config: SimulatorConfig, *, clock: Clock | None = None) -> FastAPI:
    """A simulator of every provider in ``config``, each under ``/{name}/`` in its API style,
    plus the ``/_sim/`` admin API. ``clock`` drives timestamps, expiries and reversals."""
    state = SimulatorState(config, clock)
    for style, renderer in _RENDERERS.items():
        state.register_renderer(style, renderer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ticker = asyncio.get_running_loop().create_task(_tick(state))
        logger.info("provider simulator started with {count} providers", count=len(state.config.providers))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await state.aclose()

    app = FastAPI(
        title="Kora provider simulator",
        version="1",
        lifespan=lifespan,
        telemetry=fastapi_telemetry_off(),
    )
    app.state.simulator = state
    app.include_router(admin.build_router(state))
    for name, provider in state.config.providers.items():
        app.include_router(_ROUTERS[provider.style](name, state))
    app.add_middleware(ObservabilityMiddleware, metrics=state.metrics.http, hsts_max_age=None)
    app.add_middleware(OutageMiddleware, state=state)  # outermost: an outage is not the app's answer
    return app


def simulator_state(app: FastAPI) -> SimulatorState:
    """The state behind an app built by :func:`create_simulator_app` (tests read it directly)."""
    state = app.state.simulator
    assert isinstance(state, SimulatorState)
    return state


async def _tick(state: SimulatorState) -> None:
    """Apply due transitions (processing done, reversals, expiries) even when nobody asks."""
    while True:
        await asyncio.sleep(state.config.tick_interval_seconds)
        try:
            state.advance()
        except Exception as exc:  # a bug in one transition must not stop the ticker
            logger.opt(exception=exc).error("simulator tick failed")
