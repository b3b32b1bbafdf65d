"""The risk module's ports: where the policy and the payer's recent activity come from."""

from __future__ import annotations

from typing import Protocol

from kora.risk.domain.model import RiskContext, RiskRequest
from kora.risk.domain.policy import Policy
from kora.risk.domain.reservation import Reservation, ReservationStatus


class PolicySource(Protocol):
    """The policy in force now (a reloadable file in production, a fixed value in tests)."""

    def current(self) -> Policy: ...


class RiskContextSource(Protocol):
    """The context of a request: the payer's and payee's usage and recent activity, holds
    included, over the windows the policy names. The SQL adapter computes it in the same
    transaction that reserves the payment's hold (`RiskReservations.assess_and_reserve`)."""

    async def context_for(self, request: RiskRequest, policy: Policy) -> RiskContext: ...


class RiskReservations(Protocol):
    """Assess a payment and reserve its usage atomically per payer; later commit (captured) or
    release (failed, rejected) it. Idempotent by payment id. `SqlRiskActivity` also takes a
    `connection=` keyword to run inside the caller's transaction."""

    async def assess_and_reserve(self, payment_id: str, request: RiskRequest) -> Reservation: ...

    async def commit(self, payment_id: str) -> ReservationStatus: ...

    async def release(self, payment_id: str) -> ReservationStatus: ...


class FixedPolicy:
    """A PolicySource that never changes."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def current(self) -> Policy:
        return self._policy
