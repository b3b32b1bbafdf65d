"""The sandbox provider: confirms every request at once, in process. For the embedded default
and tests; real provider behaviour (latency, declines, late confirmations) comes with the
simulator adapters."""

from __future__ import annotations

from kora.providers.ports import ProviderOutcome, ProviderRequest, ProviderResult


class SandboxGateway:
    name = "sandbox"

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=f"sbx-in-{request.payment_id.hex}")

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=f"sbx-out-{request.payment_id.hex}")
