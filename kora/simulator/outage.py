"""The outage switch, as a pure ASGI middleware in front of the providers' routes: a provider
that is down answers 503, or cuts the connection before a complete answer (``drop``)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from kora.simulator.config import OutageMode
from kora.simulator.engine import SimulatorState


class ConnectionDropped(Exception):
    """Raised after the response head so the server closes the connection mid-answer."""


class OutageMiddleware:
    def __init__(self, app: ASGIApp, *, state: SimulatorState) -> None:
        self.app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = str(scope.get("path", "")).lstrip("/").split("/", 1)[0]
            provider = self._state.provider(name)
            if provider is not None and provider.down:
                if provider.outage_mode is OutageMode.DROP:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [(b"content-length", b"64"), (b"content-type", b"application/json")],
                        }
                    )
                    raise ConnectionDropped(f"simulated outage of {name}")
                body = json.dumps({"code": "service_unavailable", "message": f"{name} is down"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"30"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
