"""A real Kora API on a real port for the console's tests: the app served by uvicorn on its own
thread and event loop, with the known day of `tests/integration/test_api_kpis.py` played
through it (same providers, routing, reconciliation events and settlements), dated today so the
console's default range shows it. SQLite: the KPI API itself is tested on both engines."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as day_time
from pathlib import Path
from typing import TypeVar

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.bootstrap import Kora
from kora.events.signing import EventSigner
from kora.http.app import create_app
from kora.identity import Role
from kora.kernel import FixedClock
from kora.platform.migrate import upgrade
from tests.integration.events.test_settlement_consumer import RECON_KID, recon_verify_keys
from tests.integration.test_api_kpis import ROUTING, ScriptedProvider, World, a_known_day
from tests.support.api import Api, new_phone
from tests.support.api import test_settings as settings_for
from tests.support.net import free_port

T = TypeVar("T")


@dataclass
class Person:
    phone_number: str
    password: str


@dataclass
class ConsoleWorld:
    url: str
    leader: Person
    admin: Person
    customer: Person
    loop: asyncio.AbstractEventLoop
    kora: Kora

    def run(self, coro: Awaitable[T], timeout: float = 120) -> T:
        """Run a coroutine on the server's event loop (where the Kora it serves lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]


@dataclass
class _Served:
    server: uvicorn.Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread


def _serve(kora: Kora, port: int) -> _Served:
    app = create_app(kora)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), name="kora-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("Kora's API did not start")
        time.sleep(0.05)
    return _Served(server, loop, thread)


def console_world(tmp_path: Path) -> Iterator[ConsoleWorld]:
    """Start the API, play the day, yield; stop the API at the end."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    upgrade(url)
    key = Ed25519PrivateKey.generate()
    settings = settings_for(url, tmp_path, KORA_PROVIDER_ROUTING=ROUTING, KORA_EVENT_VERIFY_KEYS=recon_verify_keys(key))
    today = datetime.now(UTC).date()
    clock = FixedClock(datetime.combine(today, day_time(1, 0), tzinfo=UTC))
    kora = Kora(settings, clock=clock, providers=[ScriptedProvider("alpha"), ScriptedProvider("beta")])
    port = free_port()
    served = _serve(kora, port)
    base = f"http://127.0.0.1:{port}"

    async def seed() -> tuple[Person, Person, Person]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            api = Api(client)
            api.kora = kora  # type: ignore[attr-defined]
            world = World(api, kora, clock, EventSigner(RECON_KID, key))
            await a_known_day(world)
            people = []
            for role in (Role.LEADERSHIP, Role.ADMIN):
                person = Person(new_phone(), "console-pass-" + uuid.uuid4().hex[:8])
                await kora.identity.create_staff(person.phone_number, person.password, role)
                people.append(person)
            customer = await api.customer()
            return people[0], people[1], Person(customer.phone_number, customer.password)

    try:
        leader, admin, customer = asyncio.run_coroutine_threadsafe(seed(), served.loop).result(180)
        yield ConsoleWorld(base, leader, admin, customer, served.loop, kora)
    finally:
        served.server.should_exit = True
        served.thread.join(timeout=30)
