"""The total-time budget of one provider attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kora.providers.resilience.errors import ProviderTimeout

T = TypeVar("T")


async def call_with_timeout(fn: Callable[[], Awaitable[T]], seconds: float, *, provider: str | None = None) -> T:
    """Await ``fn()`` for at most ``seconds``.

    Returns its result. Raises :class:`ProviderTimeout` (ambiguous: the request may have been
    accepted) when the budget expires, or when ``fn`` itself raises the builtin
    ``TimeoutError`` (a socket timeout is no less ambiguous). Every other exception, including
    cancellation of the caller, propagates unchanged.
    """
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await fn()
    except TimeoutError as exc:
        reason = "timeout" if scope.expired() else "socket_timeout"
        raise ProviderTimeout(reason, provider=provider) from exc
