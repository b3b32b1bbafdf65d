"""Settlement reports fetched over HTTP parse back, in each dialect, to the ground truth; the
manifest names what was omitted or duplicated."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kora.kernel import FixedClock
from kora.simulator import SimulatorConfig
from tests.integration.simulator.conftest import Simulator, SimulatorFactory

DAY = "2026-03-10"


def report(sim: Simulator, provider: str, delimiter: str) -> list[dict[str, str]]:
    response = sim.client.get(f"/_sim/providers/{provider}/settlement-report", params={"date": DAY})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text), delimiter=delimiter))


def manifest(sim: Simulator, provider: str) -> dict[str, Any]:
    result: dict[str, Any] = sim.client.get(f"/_sim/providers/{provider}/manifest", params={"date": DAY}).json()
    return result


def truth_lines(sim: Simulator, provider: str, *, with_failures: bool) -> dict[str, dict[str, Any]]:
    lines = {}
    for op in sim.ledger(provider=provider):
        for movement in op["movements"]:
            if movement["at"].startswith(DAY) and (with_failures or movement["status"] != "failed"):
                lines[movement["line_id"]] = {**movement, "external_id": op["external_id"]}
    return lines


def test_reports_of_every_dialect_match_the_ground_truth(simulator: SimulatorFactory) -> None:
    clock = FixedClock(datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    config = SimulatorConfig.for_tests()
    config.providers["momo"].reversal_after_seconds = 60
    sim = simulator(config, clock=clock)
    momo = "/momo/collection/v1_0/requesttopay"
    for number, msisdn in enumerate(
        ("2250701234567", "2250700000002", "2250700000050", "2250700000060", "2250700000061")
    ):
        body = {
            "amount": f"{1000 * (number + 1)}",
            "currency": "XOF",
            "externalId": f"pay-{number}",
            "payer": {"partyIdType": "MSISDN", "partyId": msisdn},
        }
        assert sim.client.post(momo, json=body, headers={"X-Reference-Id": str(uuid.uuid4())}).status_code == 202
    for number, mobile in enumerate(("+2250701234567", "+2250700000060")):
        sim.client.post(
            "/wave/v1/payout",
            json={"currency": "XOF", "receive_amount": "3000", "mobile": mobile, "client_reference": f"out-{number}"},
            headers={"Idempotency-Key": f"payout-{number}"},
        )
    auth = sim.client.post(
        "/card/v1/authorizations",
        json={"amount": 9000, "currency": "XOF", "card_number": "4111111111111111", "merchant_reference": "ord-1"},
    ).json()
    sim.client.post("/card/v1/captures", json={"authorization_id": auth["id"], "amount": 6000})
    sim.client.post("/card/v1/refunds", json={"authorization_id": auth["id"], "amount": 1000})
    clock.advance(timedelta(minutes=1))
    sim.client.post("/_sim/tick")  # the reversal happens on the same day
    clock.advance(timedelta(hours=1))  # J+1: nothing of J moves any more

    # MoMo: ';', dd/MM/yyyy HH:mm (Abidjan), decimals with 2 digits, failures included
    rows = report(sim, "momo", ";")
    truth = truth_lines(sim, "momo", with_failures=True)
    facts = manifest(sim, "momo")
    assert list(rows[0]) == ["Id", "External Id", "Date", "Status", "Type", "Amount", "Currency", "Fee", "Net"]
    assert {row["Date"] for row in rows} == {"10/03/2026 23:30", "10/03/2026 23:31"}
    seen: dict[str, int] = {}
    for row in rows:
        seen[row["Id"]] = seen.get(row["Id"], 0) + 1
        line = truth[row["Id"]]
        assert Decimal(row["Amount"]) == line["amount"]
        assert Decimal(row["Fee"]) == line["fee"]
        assert Decimal(row["Net"]) == line["net"]
        assert row["External Id"] == line["external_id"]
        assert row["Amount"].endswith(".00")
    assert set(truth) - set(seen) == set(facts["omitted_lines"])
    assert [line for line, count in seen.items() if count == 2] == facts["duplicated_lines"]
    assert {row["Type"] for row in rows} == {"COLLECTION", "REVERSAL"}
    assert {row["Status"] for row in rows} == {"SUCCESSFUL", "FAILED", "REVERSED"}
    assert facts["true_totals"]["net"] == sum(line["net"] for line in truth.values())
    assert set(facts["injected"]) == {"decline", "reversal", "omitted_from_report", "duplicated_in_report"}

    # Wave: ',', ISO 8601 UTC, minor units, no failures
    rows = report(sim, "wave", ",")
    truth = truth_lines(sim, "wave", with_failures=False)
    assert [row["timestamp"] for row in rows] == ["2026-03-10T23:30:00Z"]
    [row] = rows
    assert (int(row["amount"]), int(row["fee"]), int(row["net_amount"])) == (-3000, 30, -3030)
    assert set(truth) - {row["transaction_id"]} == set(manifest(sim, "wave")["omitted_lines"])

    # Card: '|', YYYYMMDD / HHMMSS, a capture and a refund
    rows = report(sim, "card", "|")
    assert [(row["RECORD_TYPE"], int(row["GROSS"]), int(row["FEE"]), int(row["NET"])) for row in rows] == [
        ("CAPTURE", 6000, 133, 5867),
        ("REFUND", -1000, 0, -1000),
    ]
    assert {(row["TXN_DATE"], row["AUTH_ID"]) for row in rows} == {("20260310", auth["id"])}
    assert sim.client.get("/_sim/providers/card/settlement-report", params={"date": "2026-03-11"}).text.count("\n") == 1
