"""NATS for the events tests: the shared JetStream server (a stream and subject namespace of
its own per test, deleted afterwards), and a private nats-server started from
deploy/nats/nats.conf with generated passwords, to check the least-privilege users."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kora.events.adapters.nats_bus import BusUnavailable, NatsEventBus
from tests.conftest import service_unavailable
from tests.support.net import free_port

SHARED_NATS_URL = os.environ.get("KORA_TEST_NATS_URL", "nats://127.0.0.1:4222")
CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "nats" / "nats.conf"
USERS = {  # user -> the environment variable deploy/nats/nats.conf reads its password from
    "kora-admin": "NATS_ADMIN_PASSWORD",
    "kora-relay": "NATS_RELAY_PASSWORD",
    "kora-notifications": "NATS_NOTIFICATIONS_PASSWORD",
    "kora-kpi": "NATS_KPI_PASSWORD",
    "kora-recon-feed": "NATS_RECON_FEED_PASSWORD",
    "kora-settlement": "NATS_SETTLEMENT_PASSWORD",
    "kora-recon": "NATS_RECON_PASSWORD",
}


@dataclass
class SharedNats:
    """A namespace on the shared server: `bus` is connected; `connect()` opens another client
    on the same streams (or on the dead-letter stream with `stream=`)."""

    bus: NatsEventBus
    namespace: str
    stream: str
    dlq_stream: str

    async def connect(self, *, stream: str | None = None) -> NatsEventBus:
        return await NatsEventBus.connect(
            SHARED_NATS_URL,
            stream=stream or self.stream,
            dlq_stream=self.dlq_stream,
            namespace=self.namespace,
            ack_timeout=3.0,
            api_timeout=3.0,
        )


@pytest.fixture
async def shared_nats() -> AsyncIterator[SharedNats]:
    """Streams `EV_<id>`/`DLQ_<id>` on subjects `<ns>.kora.events.>`/`<ns>.kora.dlq.>`, so
    tests running at the same time on the shared server never see each other's messages."""
    tag = uuid.uuid4().hex[:10]
    namespace, stream, dlq = f"t{tag}", f"EV_{tag}", f"DLQ_{tag}"
    try:
        bus = await NatsEventBus.connect(
            SHARED_NATS_URL,
            stream=stream,
            dlq_stream=dlq,
            namespace=namespace,
            ack_timeout=3.0,
            api_timeout=3.0,
            connect_timeout=3.0,
        )
    except BusUnavailable as exc:
        service_unavailable(f"NATS not reachable at KORA_TEST_NATS_URL: {exc}")
        raise
    try:
        await bus.ensure_stream()
        yield SharedNats(bus, namespace, stream, dlq)
    finally:
        await bus.delete_streams()
        await bus.close()


@dataclass
class SecuredNats:
    """A private nats-server running deploy/nats/nats.conf; `connect(user)` logs in as one of
    its users with the generated password."""

    url: str
    passwords: dict[str, str]

    async def connect(self, user: str, *, password: str | None = None, wait: float = 1.0) -> NatsEventBus:
        return await NatsEventBus.connect(
            self.url,
            user=user,
            password=self.passwords[user] if password is None else password,
            name=user,
            ack_timeout=wait,
            api_timeout=wait,
            connect_timeout=3.0,
        )


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[SecuredNats]:
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if binary is None:
        service_unavailable("nats-server binary not found (needed to run deploy/nats/nats.conf)")
        raise AssertionError("unreachable")
    # A letter first: nats-server parses the variable's value, and one starting with a digit fails.
    passwords = {user: "p" + secrets.token_hex(16) for user in USERS}
    env = {**os.environ, **{var: passwords[user] for user, var in USERS.items()}}
    port = free_port()
    log = tmp_path / "nats.log"
    command = [binary, "-c", str(CONFIG), "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")]
    command += ["-l", str(log)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, server, log)
        yield SecuredNats(f"nats://127.0.0.1:{port}", passwords)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_listening(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30.0  # generous: CI may be busy with other servers
    while time.monotonic() < deadline:
        if server.poll() is not None:
            stderr = server.stderr.read().decode() if server.stderr else ""
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"nats-server exited: {stderr} {text}"[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nats-server did not listen on {port} within 30 s")
