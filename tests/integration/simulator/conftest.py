"""Real HTTP servers on 127.0.0.1 free ports, in background threads: the simulator and a
small webhook receiver that records what it gets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from kora.kernel import Clock
from kora.simulator import SimulatorConfig, SimulatorState, create_simulator_app, simulator_state
from tests.support.net import free_port


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(app: FastAPI, *, port: int | None = None) -> RunningServer:
    """Run `app` in a background thread on `port` (a free one by default) until `stop()`."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("server did not start")
        time.sleep(0.01)
    return RunningServer(f"http://127.0.0.1:{port}", server, thread)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver; ``fail_first`` answers 500 to that many requests first."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0

    def wait_for(self, count: int, *, within: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} deliveries, got {len(self.received)}")
            time.sleep(0.01)
        return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    app = FastAPI()

    @app.post("/{path:path}")
    async def receive(path: str, request: Request) -> Response:
        if state.fail_first > 0:
            state.fail_first -= 1
            return Response(status_code=500)
        state.received.append(Received(path, dict(request.headers), await request.body()))
        return Response(status_code=204)

    running = serve(app)
    state.url = running.url
    yield state
    running.stop()


@dataclass
class Simulator:
    url: str
    state: SimulatorState
    client: httpx.Client

    def ledger(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get("/_sim/ledger", params=params)
        response.raise_for_status()
        return list(response.json()["operations"])

    def poll(self, path: str, until: Callable[[dict[str, Any]], bool], *, within: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            body: dict[str, Any] = self.client.get(path).json()
            if until(body) or time.monotonic() > deadline:
                return body
            time.sleep(0.02)


SimulatorFactory = Callable[..., Simulator]


@pytest.fixture
def simulator() -> Iterator[SimulatorFactory]:
    started: list[tuple[RunningServer, httpx.Client]] = []

    def start(config: SimulatorConfig | None = None, *, clock: Clock | None = None) -> Simulator:
        app = create_simulator_app(config or SimulatorConfig.for_tests(), clock=clock)
        running = serve(app)
        client = httpx.Client(base_url=running.url, timeout=5)
        started.append((running, client))
        return Simulator(running.url, simulator_state(app), client)

    yield start
    for running, client in started:
        client.close()
        running.stop()
