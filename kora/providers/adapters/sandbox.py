"""The sandbox provider: confirms every request at once, in process. For the embedded default
and tests; real provider behaviour (latency, declines, late confirmations) comes with the
simulator adapters."""

from __future__ import annotations

from kora.providers.ports import ProviderOperation, ProviderOutcome, ProviderRequest, ProviderResult


class SandboxGateway:
    name = "sandbox"

    async def collect(self, request: ProviderRequest) -> ProviderResult:
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=f"sbx-in-{request.payment_id.hex}")

    async def disburse(self, request: ProviderRequest) -> ProviderResult:
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=f"sbx-out-{request.payment_id.hex}")

    async def status(self, request: ProviderRequest, operation: ProviderOperation) -> ProviderResult:
        # The sandbox confirms every request at once, so any request it was sent succeeded.
        prefix = "sbx-in" if operation is ProviderOperation.COLLECT else "sbx-out"
        return ProviderResult(ProviderOutcome.SUCCEEDED, provider_ref=f"{prefix}-{request.payment_id.hex}")
