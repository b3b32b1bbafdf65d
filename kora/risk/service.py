"""`RiskEngine`: assess a payment with the policy in force and the context from the store."""

from __future__ import annotations

from kora.risk.domain.assessment import assess
from kora.risk.domain.model import Decision, RiskRequest
from kora.risk.ports import PolicySource, RiskContextSource


class RiskEngine:
    """The use case the payment path will call. It reads; it does not reserve: the caller
    records the payment (and its hold) in the same transaction as the context it was judged on."""

    def __init__(self, policies: PolicySource, contexts: RiskContextSource) -> None:
        self._policies = policies
        self._contexts = contexts

    @property
    def policy_version(self) -> str:
        return self._policies.current().version

    async def assess(self, request: RiskRequest) -> Decision:
        """The decision for `request` under the current policy, with its reasons and version."""
        policy = self._policies.current()
        context = await self._contexts.context_for(request, policy)
        return assess(request, context, policy)
