"""MoMo-like API over a real socket: 202 then polling, 409 on a reused reference, callbacks,
late success after the caller's timeout, duplicate and lost callbacks, outage switch."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.simulator.conftest import Receiver, SimulatorFactory

RTP = "/momo/collection/v1_0/requesttopay"
TRANSFER = "/momo/disbursement/v1_0/transfer"


def rtp_body(msisdn: str, amount: str = "1500", external_id: str = "pay-1") -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "XOF",
        "externalId": external_id,
        "payer": {"partyIdType": "MSISDN", "partyId": msisdn},
    }


def test_request_to_pay_is_accepted_then_polled_to_successful_with_one_callback(
    simulator: SimulatorFactory, receiver: Receiver
) -> None:
    sim = simulator()
    reference = str(uuid.uuid4())
    response = sim.client.post(
        RTP,
        json=rtp_body("2250701234567"),
        headers={
            "X-Reference-Id": reference,
            "X-Callback-Url": f"{receiver.url}/momo-callback",
            "X-Correlation-ID": "corr-momo-0001",
        },
    )
    assert response.status_code == 202
    assert response.content == b""
    assert response.headers["X-Correlation-ID"] == "corr-momo-0001"
    status = sim.poll(f"{RTP}/{reference}", lambda body: body["status"] != "PENDING")
    assert status["status"] == "SUCCESSFUL"
    assert status["amount"] == "1500"
    assert status["financialTransactionId"]
    [callback] = receiver.wait_for(1)
    assert json.loads(callback.body)["status"] == "SUCCESSFUL"
    assert callback.headers["x-correlation-id"] == "corr-momo-0001"
    [truth] = sim.ledger(reference=reference)
    assert (truth["status"], truth["amount"], truth["fee"]) == ("succeeded", 1500, 15)


@pytest.mark.parametrize(
    ("msisdn", "reason"),
    [
        ("2250700000001", "APPROVAL_REJECTED"),
        ("2250700000002", "NOT_ENOUGH_FUNDS"),
        ("2250700000003", "PAYER_NOT_FOUND"),
    ],
)
def test_magic_msisdns_fail_with_their_reason(simulator: SimulatorFactory, msisdn: str, reason: str) -> None:
    sim = simulator()
    reference = str(uuid.uuid4())
    assert sim.client.post(RTP, json=rtp_body(msisdn), headers={"X-Reference-Id": reference}).status_code == 202
    status = sim.poll(f"{RTP}/{reference}", lambda body: body["status"] != "PENDING")
    assert (status["status"], status["reason"]) == ("FAILED", reason)


def test_disbursement_names_the_payee_and_a_reused_reference_is_409(simulator: SimulatorFactory) -> None:
    sim = simulator()
    reference = str(uuid.uuid4())
    body = {
        "amount": "2000",
        "currency": "XOF",
        "externalId": "out-1",
        "payee": {"partyIdType": "MSISDN", "partyId": "2250700000003"},
    }
    assert sim.client.post(TRANSFER, json=body, headers={"X-Reference-Id": reference}).status_code == 202
    again = sim.client.post(TRANSFER, json=body, headers={"X-Reference-Id": reference})
    assert again.status_code == 409
    assert again.json()["code"] == "RESOURCE_ALREADY_EXIST"
    status = sim.poll(f"{TRANSFER}/{reference}", lambda b: b["status"] != "PENDING")
    assert status["reason"] == "PAYEE_NOT_FOUND"
    assert sim.client.get(f"{TRANSFER}/{uuid.uuid4()}").status_code == 404
    assert sim.client.post(TRANSFER, json=body, headers={"X-Reference-Id": "not-a-uuid"}).status_code == 400


def test_late_success_times_the_caller_out_but_polling_shows_successful(simulator: SimulatorFactory) -> None:
    sim = simulator()  # hold_seconds = 0.5 in the test config
    reference = str(uuid.uuid4())
    with pytest.raises(httpx.ReadTimeout):
        sim.client.post(RTP, json=rtp_body("2250700000020"), headers={"X-Reference-Id": reference}, timeout=0.15)
    status = sim.client.get(f"{RTP}/{reference}").json()
    assert status["status"] == "SUCCESSFUL"
    time.sleep(0.5)  # let the held answer finish
    [truth] = sim.ledger(reference=reference)
    assert truth["status"] == "succeeded"
    assert truth["answered_late"] is True


def test_timeout_ends_failed_and_an_unrecorded_timeout_leaves_nothing(simulator: SimulatorFactory) -> None:
    sim = simulator()
    failed, unrecorded = str(uuid.uuid4()), str(uuid.uuid4())
    for reference, msisdn in ((failed, "2250700000010"), (unrecorded, "2250700000011")):
        with pytest.raises(httpx.ReadTimeout):
            sim.client.post(RTP, json=rtp_body(msisdn), headers={"X-Reference-Id": reference}, timeout=0.15)
    assert sim.client.get(f"{RTP}/{failed}").json()["status"] == "FAILED"
    assert sim.client.get(f"{RTP}/{unrecorded}").status_code == 404


def test_duplicate_and_lost_callbacks(simulator: SimulatorFactory, receiver: Receiver) -> None:
    sim = simulator()
    duplicate, lost = str(uuid.uuid4()), str(uuid.uuid4())
    callback = {"X-Callback-Url": f"{receiver.url}/cb"}
    sim.client.post(RTP, json=rtp_body("2250700000031"), headers={"X-Reference-Id": duplicate, **callback})
    sim.client.post(RTP, json=rtp_body("2250700000030"), headers={"X-Reference-Id": lost, **callback})
    received = receiver.wait_for(2)
    time.sleep(0.1)
    assert len(receiver.received) == 2
    assert received[0].body == received[1].body
    assert sim.client.get(f"{RTP}/{lost}").json()["status"] == "SUCCESSFUL"


def test_momo_callback_is_not_retried(simulator: SimulatorFactory, receiver: Receiver) -> None:
    sim = simulator()
    receiver.fail_first = 1
    reference = str(uuid.uuid4())
    sim.client.post(
        RTP, json=rtp_body("2250701234567"), headers={"X-Reference-Id": reference, "X-Callback-Url": receiver.url}
    )
    sim.poll(f"{RTP}/{reference}", lambda body: body["status"] != "PENDING")
    time.sleep(0.3)
    assert receiver.received == []
    assert sim.ledger(reference=reference)[0]["callbacks_delivered"] == 0


def test_outage_switch_503_then_dropped_connection_then_back(simulator: SimulatorFactory) -> None:
    sim = simulator()
    assert sim.client.post("/_sim/providers/momo/outage", json={"down": True}).json()["down"] is True
    response = sim.client.post(RTP, json=rtp_body("2250701234567"), headers={"X-Reference-Id": str(uuid.uuid4())})
    assert response.status_code == 503
    sim.client.post("/_sim/providers/momo/outage", json={"down": True, "mode": "drop"})
    with pytest.raises(httpx.TransportError):
        sim.client.post(RTP, json=rtp_body("2250701234567"), headers={"X-Reference-Id": str(uuid.uuid4())})
    assert sim.client.get("/wave/v1/payout/unknown").status_code == 404  # other providers stay up
    sim.client.post("/_sim/providers/momo/outage", json={"down": False})
    reference = str(uuid.uuid4())
    assert (
        sim.client.post(RTP, json=rtp_body("2250701234567"), headers={"X-Reference-Id": reference}).status_code == 202
    )
    assert len(sim.ledger(provider="momo")) == 1


def test_reversal_after_success_and_stuck_pending(simulator: SimulatorFactory) -> None:
    sim = simulator()
    sim.client.patch("/_sim/providers/momo", json={"reversal_after_seconds": 0.05})
    reversed_ref, stuck_ref = str(uuid.uuid4()), str(uuid.uuid4())
    sim.client.post(RTP, json=rtp_body("2250700000050"), headers={"X-Reference-Id": reversed_ref})
    sim.client.post(RTP, json=rtp_body("2250700000040"), headers={"X-Reference-Id": stuck_ref})
    deadline = time.monotonic() + 5
    while sim.ledger(reference=reversed_ref)[0]["status"] != "reversed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    [stuck] = sim.ledger(reference=stuck_ref)
    assert sim.client.get(f"{RTP}/{stuck_ref}").json()["status"] == "PENDING"
    resolved = sim.client.post(
        f"/_sim/operations/{stuck['id']}/resolve", json={"status": "failed", "reason": "EXPIRED"}
    )
    assert resolved.json()["status"] == "failed"
    assert sim.client.get(f"{RTP}/{stuck_ref}").json()["reason"] == "EXPIRED"
