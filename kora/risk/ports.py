"""The risk module's ports: where the policy and the payer's recent activity come from."""

from __future__ import annotations

from typing import Protocol

from kora.risk.domain.model import RiskContext, RiskRequest
from kora.risk.domain.policy import Policy


class PolicySource(Protocol):
    """The policy in force now (a reloadable file in production, a fixed value in tests)."""

    def current(self) -> Policy: ...


class RiskContextSource(Protocol):
    """The context of a request: the payer's and payee's usage and recent activity, holds
    included, over the windows the policy names. The PostgreSQL adapter (next session) must
    compute it in the same transaction that reserves the payment's hold."""

    async def context_for(self, request: RiskRequest, policy: Policy) -> RiskContext: ...


class FixedPolicy:
    """A PolicySource that never changes."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    def current(self) -> Policy:
        return self._policy
