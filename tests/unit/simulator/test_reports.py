from __future__ import annotations

from datetime import UTC, date, datetime

from kora.simulator.behaviour import SUCCESS, Behaviour, Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.records import Movement, Operation, Status
from kora.simulator.reports import manifest, render_report

AT = datetime(2026, 3, 10, 9, 5, 7, tzinfo=UTC)


def operation(op_id: str, kind: str, amount: int, fee: int, behaviour: Behaviour = SUCCESS) -> Operation:
    op = Operation(
        id=op_id,
        provider="p",
        kind=kind,
        reference=f"ref-{op_id}",
        external_id=f"ext-{op_id}",
        amount=amount,
        currency="XOF",
        behaviour=behaviour,
        party=None,
        created_at=AT,
        status=Status.SUCCEEDED,
        fee=fee,
    )
    sign = 1 if kind in ("collection", "checkout", "capture") else -1
    op.movements.append(Movement(op_id, op_id, kind, "succeeded", sign * amount, fee, AT))
    return op


def test_momo_dialect() -> None:
    text = render_report(ApiStyle.MOMO, [operation("1", "collection", 1500, 15)], date(2026, 3, 10))
    assert text.splitlines() == [
        "Id;External Id;Date;Status;Type;Amount;Currency;Fee;Net",
        "1;ext-1;10/03/2026 09:05;SUCCESSFUL;COLLECTION;1500.00;XOF;15.00;1485.00",
    ]


def test_wave_dialect() -> None:
    text = render_report(ApiStyle.WAVE, [operation("pt-1", "payout", 3000, 30)], date(2026, 3, 10))
    assert text.splitlines() == [
        "transaction_id,client_reference,timestamp,status,type,amount,fee,net_amount,currency",
        "pt-1,ext-pt-1,2026-03-10T09:05:07Z,succeeded,payout,-3000,30,-3030,XOF",
    ]


def test_card_dialect_and_other_days_are_empty() -> None:
    ops = [operation("a1", "capture", 6000, 133)]
    assert render_report(ApiStyle.CARD, ops, date(2026, 3, 10)).splitlines()[1] == (
        "CAPTURE|a1|ext-a1|a1|20260310|090507|XOF|6000|133|5867"
    )
    assert len(render_report(ApiStyle.CARD, ops, date(2026, 3, 11)).splitlines()) == 1


def test_omitted_and_duplicated_lines_are_in_the_manifest() -> None:
    ops = [
        operation("1", "collection", 1000, 10),
        operation("2", "collection", 2000, 20, Behaviour(Scenario.OMITTED_FROM_REPORT)),
        operation("3", "collection", 3000, 30, Behaviour(Scenario.DUPLICATED_IN_REPORT)),
    ]
    lines = render_report(ApiStyle.MOMO, ops, date(2026, 3, 10)).splitlines()[1:]
    assert [line.split(";")[0] for line in lines] == ["1", "3", "3"]
    facts = manifest("p", ApiStyle.MOMO, ops, date(2026, 3, 10))
    assert (facts["omitted_lines"], facts["duplicated_lines"]) == (["2"], ["3"])
    assert facts["true_totals"] == {"amount": 6000, "fee": 60, "net": 5940}
    assert facts["reported_totals"] == {"amount": 7000, "fee": 70, "net": 6930}
    assert (facts["true_lines"], facts["reported_lines"]) == (3, 3)
