"""The leadership KPI API: `GET /v1/admin/kpis` (roles `leadership` and `admin`).

Exact numbers from the core's database for a UTC time range (see `kora.kpis`); the response
says in `sources` where each section comes from. Amounts are integers in minor units, per
currency; rates are ratios in [0, 1], null when nothing was finished.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kora.http.problems import problem_response, problem_responses
from kora.http.security import require_role
from kora.identity import Principal
from kora.kpis import InvalidRange, KpiService

router = APIRouter(prefix="/v1/admin", tags=["admin"])

KpiReader = Annotated[Principal, Depends(require_role("leadership", "admin"))]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeOut(_Out):
    from_: str = Field(alias="from", description="Start of the range (UTC, included).")
    to: str = Field(description="End of the range (UTC, excluded).")
    as_of: str = Field(description="When the report was read; `settlement.unsettled` is as of this instant.")


class TypeCounts(_Out):
    payment_type: str | None = None
    currency: str
    count: int = Field(description="Payments created in the range.")
    succeeded: int = Field(description="Reached CAPTURED (money moved), whatever happened after.")
    failed: int = Field(description="FAILED, except the cancelled.")
    cancelled: int = Field(description="Voided or expired card authorizations: nobody failed.")
    pending: int = Field(description="INITIATED or AUTHORIZED: no definite answer yet.")
    reversed: int = Field(description="Succeeded, then REVERSED or CHARGED_BACK.")
    volume: int = Field(description="What moved (captured amounts) of the succeeded, minor units.")
    fees: int = Field(description="Fees of the succeeded, minor units.")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")


class PaymentsOut(_Out):
    by_type: list[TypeCounts]
    by_currency: list[TypeCounts]


class FailureCode(_Out):
    code: str
    cause: str
    count: int


class SuccessOut(_Out):
    succeeded: int
    failed: int
    finished: int
    pending: int
    cancelled: int
    rate: float | None = Field(description="succeeded / finished.")
    failed_by_cause: dict[str, int] = Field(description="declined, provider_error, other.")
    failed_by_code: list[FailureCode]


class DelayOut(_Out):
    provider: str
    settled: int
    p50_seconds: int
    p95_seconds: int
    p99_seconds: int
    max_seconds: int
    late: int = Field(description="Settled after their settlement_due.")


class SettledOut(_Out):
    provider: str
    currency: str
    count: int
    amount: int
    by_reconciliation: int


class UnsettledOut(_Out):
    provider: str | None = None
    payment_type: str | None = None
    currency: str
    count: int
    amount: int
    overdue_count: int
    overdue_amount: int
    oldest_captured_at: str | None = None


class SettlementOut(_Out):
    delays: list[DelayOut]
    settled: list[SettledOut]
    unsettled: list[UnsettledOut]
    unsettled_by_currency: list[UnsettledOut]


class MismatchOut(_Out):
    outcome: str
    reason: str | None
    currency: str | None
    payments: int
    amount: int


class AmountOut(_Out):
    currency: str
    amount: int


class ReconciliationOut(_Out):
    reconciled_payments: int
    settled_by_reconciliation: int
    mismatched_payments: int
    mismatch_rate: float | None
    mismatches: list[MismatchOut]
    amount_at_risk: list[AmountOut] = Field(description="Sum of the confirmed mismatches' amounts at stake.")


class ProviderOut(_Out):
    provider: str
    payments: int
    succeeded: int
    failed: int
    declined: int
    provider_errors: int
    pending: int
    rerouted_away: int
    rerouted_in: int
    requests: int = Field(description="Payments it ended with, plus those it certainly did not take.")
    errors: int = Field(description="Provider errors, plus the requests it certainly did not take.")
    error_rate: float | None
    success_rate: float | None


class RerouteOut(_Out):
    from_provider: str
    to_provider: str
    count: int


class RetriesOut(_Out):
    provider_payments: int
    rerouted: int
    retry_rate: float | None
    reroutes: list[RerouteOut]


class DailyPaymentOut(_Out):
    day: str
    payment_type: str
    currency: str
    status: str
    count: int
    amount: int
    fees: int


class DailyCustomersOut(_Out):
    day: str
    count: int


class DailyOut(_Out):
    payments: list[DailyPaymentOut]
    new_customers: list[DailyCustomersOut]


class KpiReportOut(_Out):
    range: RangeOut
    payments: PaymentsOut
    success: SuccessOut
    settlement: SettlementOut
    reconciliation: ReconciliationOut
    providers: list[ProviderOut]
    retries: RetriesOut
    daily: DailyOut
    sources: dict[str, str]


def kpi_service(request: Request) -> KpiService:
    return cast(KpiService, request.app.state.kpis)


@router.get(
    "/kpis",
    response_model=KpiReportOut,
    response_model_by_alias=True,
    responses=problem_responses("invalid_range", "not_authenticated", "forbidden"),
)
async def kpis(
    request: Request,
    _reader: KpiReader,
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=40, description="ISO date (whole UTC day) or datetime; default today."),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=40, description="ISO date (included) or datetime (excluded); default end of `from`'s day."),
    ] = None,
) -> Response | dict[str, Any]:
    """Business KPIs for a UTC range of at most 92 days: volumes and counts by payment type and
    currency, success rate and failure causes, settlement delays per provider, unsettled amounts,
    reconciliation mismatches and amount at risk, provider error and retry rates, and the daily
    projection. Exact, from the database."""
    service = kpi_service(request)
    try:
        window = service.range(from_, to)
    except InvalidRange as exc:
        return problem_response(exc.code, str(exc))
    return await service.report(window)
