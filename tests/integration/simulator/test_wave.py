"""Wave-like API over a real socket: Idempotency-Key semantics, statuses, signed webhooks
with retries, received and verified by a local receiver."""

from __future__ import annotations

import json
import time
from typing import Any

from kora.simulator import WAVE_SIGNATURE_HEADER, SimulatorConfig, verify_signature
from tests.integration.simulator.conftest import Receiver, SimulatorFactory

SECRET = "whsec_simulator"


def payout(mobile: str, amount: str = "10000", reference: str = "pay-9") -> dict[str, Any]:
    return {"currency": "XOF", "receive_amount": amount, "mobile": mobile, "client_reference": reference}


def with_webhook(receiver: Receiver) -> SimulatorConfig:
    config = SimulatorConfig.for_tests()
    config.providers["wave"].webhook_url = f"{receiver.url}/wave-webhook"
    return config


def verified_events(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    events = []
    for delivery in receiver.wait_for(count):
        header = delivery.headers[WAVE_SIGNATURE_HEADER.lower()]
        assert verify_signature(SECRET, header, delivery.body, now=int(time.time()))
        assert not verify_signature("wrong", header, delivery.body, now=int(time.time()))
        events.append(json.loads(delivery.body))
    return events


def test_same_key_same_body_is_the_same_payout_other_body_is_422(simulator: SimulatorFactory) -> None:
    sim = simulator()
    first = sim.client.post("/wave/v1/payout", json=payout("+2250701234567"), headers={"Idempotency-Key": "key-1"})
    again = sim.client.post("/wave/v1/payout", json=payout("+2250701234567"), headers={"Idempotency-Key": "key-1"})
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["status"] == "succeeded"
    other = sim.client.post("/wave/v1/payout", json=payout("+2250701234567", "5"), headers={"Idempotency-Key": "key-1"})
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency-mismatch"
    assert sim.client.post("/wave/v1/payout", json=payout("+2250701234567")).status_code == 400
    assert len(sim.ledger(provider="wave")) == 1
    found = sim.client.get("/wave/v1/payouts/search", params={"client_reference": "pay-9"}).json()["result"]
    assert [item["id"] for item in found] == [first.json()["id"]]


def test_checkout_webhook_is_signed_and_retried_after_a_failure(
    simulator: SimulatorFactory, receiver: Receiver
) -> None:
    sim = simulator(with_webhook(receiver))
    receiver.fail_first = 1
    session = sim.client.post(
        "/wave/v1/checkout/sessions",
        json={"amount": "2500", "currency": "XOF", "client_reference": "c-1"},
        headers={"Idempotency-Key": "chk-1", "X-Correlation-ID": "corr-wave-0001"},
    ).json()
    [event] = verified_events(receiver, 1)
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["id"] == session["id"]
    assert receiver.received[0].headers["x-correlation-id"] == "corr-wave-0001"
    # The simulator records the delivery once it has read the receiver's answer, a moment after
    # the receiver saw the request: wait for that record rather than race it.
    deadline = time.monotonic() + 5.0
    truth = sim.ledger(reference="chk-1")[0]
    while truth["callbacks_delivered"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        truth = sim.ledger(reference="chk-1")[0]
    assert (truth["callbacks_sent"], truth["callbacks_delivered"]) == (1, 1)
    assert sim.client.get(f"/wave/v1/checkout/sessions/{session['id']}").json()["status"] == "succeeded"


def test_failed_payout_and_duplicate_webhook_share_one_event_id(
    simulator: SimulatorFactory, receiver: Receiver
) -> None:
    sim = simulator(with_webhook(receiver))
    failed = sim.client.post("/wave/v1/payout", json=payout("+2250700000002"), headers={"Idempotency-Key": "k-f"})
    assert failed.json()["status"] in ("processing", "failed")
    sim.client.post(
        "/wave/v1/payout", json=payout("+2250700000031", reference="dup"), headers={"Idempotency-Key": "k-d"}
    )
    events = verified_events(receiver, 3)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    assert by_type["payout.failed"][0]["data"]["payout_error"]["error_code"] == "insufficient-funds"
    first, second = by_type["payout.succeeded"]
    assert first["id"] == second["id"]


def test_reversal_after_success_sends_a_reversed_webhook(simulator: SimulatorFactory, receiver: Receiver) -> None:
    config = with_webhook(receiver)
    config.providers["wave"].reversal_after_seconds = 0.05
    sim = simulator(config)
    created = sim.client.post("/wave/v1/payout", json=payout("+2250700000050"), headers={"Idempotency-Key": "k-r"})
    events = verified_events(receiver, 2)
    assert [event["type"] for event in events] == ["payout.succeeded", "payout.reversed"]
    assert sim.client.get(f"/wave/v1/payout/{created.json()['id']}").json()["status"] == "reversed"
