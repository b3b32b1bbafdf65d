"""What a settlement run reports: each named or selected payment's outcome, the counts, and
the totals per direction, for this run and for what earlier runs had already settled."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kora.payments.service.settlement import SettlementCommand


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    payment_id: uuid.UUID
    outcome: str  # settled | already_settled | rejected
    reason: str | None = None
    flow: str | None = None
    amount: int = 0
    payment_type: str | None = None
    delay_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"payment_id": str(self.payment_id), "outcome": self.outcome}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.outcome in ("settled", "already_settled"):
            out.update(flow=self.flow, amount=self.amount)
        return out


@dataclass
class SettlementReport:
    cmd: SettlementCommand
    outcomes: list[SettlementOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def flow(self, name: str, outcome: str = "settled") -> dict[str, int]:
        moved = [o.amount for o in self.outcomes if o.outcome == outcome and o.flow == name]
        return {"count": len(moved), "amount": sum(moved)}

    def as_dict(self) -> dict[str, Any]:
        collections, disbursements = self.flow("collections"), self.flow("disbursements")
        earlier_in = self.flow("collections", "already_settled")
        earlier_out = self.flow("disbursements", "already_settled")
        return {
            "provider": self.cmd.provider,
            "currency": self.cmd.currency,
            "reference": self.cmd.reference,
            "through": self.cmd.through.isoformat() if self.cmd.through else None,
            "settled": self.count("settled"),
            "already_settled": self.count("already_settled"),
            "rejected": self.count("rejected"),
            # What the settlement bank account moved by in this run: the bank statement should
            # show the same net amount (collections in, disbursements out).
            "totals": {
                "collections": collections,
                "disbursements": disbursements,
                "net": collections["amount"] - disbursements["amount"],
                # What earlier runs had settled of the payments this one selected (a retry
                # after a run that failed part way, a report sent twice): added to `net`, what
                # the whole report moved, so a retried reference still reports its full amount.
                "already_settled": {
                    "collections": earlier_in,
                    "disbursements": earlier_out,
                    "net": earlier_in["amount"] - earlier_out["amount"],
                },
            },
            "outcomes": [o.as_dict() for o in self.outcomes],
        }
