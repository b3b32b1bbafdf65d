"""The composition root's side of the core's `settlement` consumer: reconciliation's outcome
events drive the payments module's own use cases, on units of work bound to the consumer's
transaction (savepoints), so the effect and `processed_events` commit together (ADR 0024)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events.consumers.recon_outcomes import SOURCE, MismatchFlag, SettlementInstruction
from kora.payments.ports import PaymentFlag, PaymentsUnitOfWork
from kora.payments.service.settlement import SettlementCommand, Settlements

ACTOR = "reconciliation"

UnitOfWorkOn = Callable[[AsyncConnection], PaymentsUnitOfWork]


class CoreReconOutcomes:
    """`ReconOutcomesPort` on the payments module."""

    def __init__(self, *, settlements: Settlements, unit_of_work_on: UnitOfWorkOn) -> None:
        self._settlements = settlements
        self._uow_on = unit_of_work_on

    async def settle(self, conn: AsyncConnection, instruction: SettlementInstruction) -> Mapping[str, int]:
        """Raises what `Settlements.settle` raises (an unknown provider, a refused reference):
        the runtime retries, then parks the event for a person."""
        result = await self._settlements.on(lambda: self._uow_on(conn)).settle(
            SettlementCommand(
                provider=instruction.provider,
                currency=instruction.currency,
                actor=ACTOR,
                reference=instruction.reference,
                payment_ids=instruction.payment_ids,
                correlation_id=instruction.correlation_id,
            )
        )
        body = result.body
        return {key: int(body[key]) for key in ("settled", "already_settled", "rejected")}

    async def flag(self, conn: AsyncConnection, flag: MismatchFlag) -> bool:
        async with self._uow_on(conn) as uow:
            added = await uow.payments.add_flag(
                PaymentFlag(
                    payment_id=flag.payment_id,
                    source=SOURCE,
                    case_id=flag.case_id,
                    outcome=flag.outcome,
                    reason=flag.reason,
                    amount=flag.amount,
                    currency=flag.currency,
                    flagged_at=flag.at,
                )
            )
            await uow.commit()
        return added
