"""Anti-replay of sensitive requests (ADR 0012): each debit request carries a timestamp and a
nonce; a stale timestamp, or a nonce its session has already used, is refused.

The nonce is recorded per session, and a session is bound to one device (its access tokens
are accepted only with that device's X-Device-ID), so a request captured in one session cannot
be played again in it, while another session is free to pick the same random value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from opentelemetry import trace

from kora.identity.domain import (
    Principal,
    ReplayRefused,
    RequestReplayed,
    check_fresh,
    parse_freshness,
)
from kora.identity.ports import IdentitySettings, IdentityUnitOfWork
from kora.kernel import Clock
from kora.platform.group_commit import GroupCommit

_tracer = trace.get_tracer("kora.identity")
_NonceEntry = tuple[uuid.UUID, str, datetime]
# Rows are purged this long after they expire, so a replica whose clock runs behind (and so
# still accepts a timestamp a little longer) still finds the nonce.
PURGE_MARGIN = timedelta(seconds=60)


class ReplayGuard:
    """The anti-replay use cases; IdentityService exposes them."""

    def __init__(
        self, *, uow_factory: Callable[[], IdentityUnitOfWork], clock: Clock, settings: IdentitySettings
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._window = timedelta(seconds=settings.replay_window_seconds)
        # Concurrent requests record their nonces together, in one short transaction (group
        # commit, as transfers do: ADR 0010): a debit costs no extra round trips under load.
        self._recorder: GroupCommit[_NonceEntry, bool] = GroupCommit(self._record_batch, max_size=128)

    async def _record_batch(self, entries: list[_NonceEntry]) -> list[bool]:
        """Record a batch of nonces; True for each first use. Twins inside one batch are
        decided here (the first wins), twins across batches or processes by the primary key."""
        distinct = list(dict.fromkeys((session, nonce) for session, nonce, _ in entries))
        expiry = {(session, nonce): expires for session, nonce, expires in entries}
        async with self._uow() as uow:
            # This transaction writes nonces and nothing else: no fsync to wait for.
            await uow.request_nonces.relax_durability()
            if len(distinct) == 1:
                session, nonce = distinct[0]
                added = await uow.request_nonces.add(session, nonce, expires_at=expiry[distinct[0]])
                recorded = set(distinct) if added else set()
            else:
                recorded = await uow.request_nonces.add_many([(s, n, expiry[(s, n)]) for s, n in distinct])
            await uow.commit()
        answers: list[bool] = []
        for session, nonce, _ in entries:
            key = (session, nonce)
            answers.append(key in recorded)
            recorded.discard(key)  # a twin later in the batch is a replay
        return answers

    async def consume(
        self,
        principal: Principal,
        *,
        nonce: str | None,
        timestamp: str | None,
        correlation_id: str | None = None,
    ) -> None:
        """Accept this request's nonce and timestamp (the raw header values) once per session.

        Raises RequestTimestampMissing, RequestTimestampInvalid, RequestNonceMissing,
        RequestNonceInvalid, RequestStale, RequestReplayed (all ReplayRefused). Changes
        nothing but the session's nonce record (and an audit record for a replay)."""
        with _tracer.start_as_current_span("identity.request_nonce") as span:
            try:
                freshness = parse_freshness(nonce=nonce, timestamp=timestamp)
                expires_at = check_fresh(freshness, now=self._clock.now(), window=self._window)
                first_use = await self._recorder.submit((principal.session_id, freshness.nonce, expires_at))
                if not first_use:
                    await self._audit_replay(principal, correlation_id)
                    raise RequestReplayed()
            except ReplayRefused as refused:
                span.set_attribute("kora.replay.outcome", refused.reason)
                raise
            span.set_attribute("kora.replay.outcome", "accepted")

    async def _audit_replay(self, principal: Principal, correlation_id: str | None) -> None:
        """A nonce came back within its window: either a client bug or a captured request.
        Recorded in its own (durable) transaction; the session itself is left alone, since a
        replayed request cannot tell an attacker from the session's owner."""
        async with self._uow() as uow:
            await uow.audit.record(
                actor=principal.actor,
                action="auth.request.replayed",
                subject=principal.actor,
                correlation_id=correlation_id,
                outcome="denied",
                details={"session_id": str(principal.session_id)},
            )
            await uow.commit()

    async def purge(self) -> int:
        """Delete the nonces whose timestamps can no longer be accepted (housekeeping; any
        process may run it, at any time). Returns how many rows went."""
        expired_before = self._clock.now() - PURGE_MARGIN
        async with self._uow() as uow:
            purged = await uow.request_nonces.purge(expired_before=expired_before)
            await uow.commit()
        return purged
