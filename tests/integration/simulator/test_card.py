"""Card acquirer over a real socket: authorize, partial capture, repeated partial refunds up
to the captured amount, void, expiry by the Clock, chargeback webhook."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from kora.kernel import FixedClock
from kora.simulator import CARD_SIGNATURE_HEADER, SimulatorConfig, verify_signature
from tests.integration.simulator.conftest import Receiver, Simulator, SimulatorFactory

CARD = "4111111111111111"


def authorize(sim: Simulator, amount: int, reference: str, card: str = CARD) -> dict[str, Any]:
    response = sim.client.post(
        "/card/v1/authorizations",
        json={"amount": amount, "currency": "XOF", "card_number": card, "merchant_reference": reference},
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def test_capture_partial_then_refunds_up_to_the_captured_amount(simulator: SimulatorFactory) -> None:
    sim = simulator()
    auth = authorize(sim, 10_000, "order-1")
    assert auth["status"] == "authorized"
    too_much = sim.client.post("/card/v1/captures", json={"authorization_id": auth["id"], "amount": 10_001})
    assert too_much.status_code == 422
    capture = sim.client.post("/card/v1/captures", json={"authorization_id": auth["id"], "amount": 7_000})
    assert capture.status_code == 201
    assert capture.json()["fee"] == 25 + 126  # 25 fixed + 1.80 %
    again = sim.client.post("/card/v1/captures", json={"authorization_id": auth["id"], "amount": 1_000})
    assert again.status_code == 409
    for amount in (3_000, 4_000):
        assert (
            sim.client.post("/card/v1/refunds", json={"authorization_id": auth["id"], "amount": amount}).status_code
            == 201
        )
    over = sim.client.post("/card/v1/refunds", json={"authorization_id": auth["id"], "amount": 1})
    assert over.status_code == 422
    state = sim.client.get(f"/card/v1/authorizations/{auth['id']}").json()
    assert (state["captured_amount"], state["refunded_amount"]) == (7_000, 7_000)


def test_void_and_decline(simulator: SimulatorFactory) -> None:
    sim = simulator()
    auth = authorize(sim, 5_000, "order-2")
    assert sim.client.post("/card/v1/voids", json={"authorization_id": auth["id"]}).status_code == 201
    assert sim.client.post("/card/v1/captures", json={"authorization_id": auth["id"]}).status_code == 409
    declined = authorize(sim, 5_000, "order-3", card="4000000000000002")
    assert (declined["status"], declined["decline_code"]) == ("declined", "insufficient_funds")
    assert sim.client.post("/card/v1/refunds", json={"authorization_id": auth["id"], "amount": 1}).status_code == 409


def test_authorization_expires_by_the_clock(simulator: SimulatorFactory) -> None:
    clock = FixedClock()
    config = SimulatorConfig.for_tests()
    config.providers["card"].authorization_ttl_seconds = 3600
    sim = simulator(config, clock=clock)
    auth = authorize(sim, 5_000, "order-4")
    clock.advance(timedelta(seconds=3599))
    assert sim.client.get(f"/card/v1/authorizations/{auth['id']}").json()["status"] == "authorized"
    clock.advance(timedelta(seconds=2))
    sim.client.post("/_sim/tick")
    assert sim.client.get(f"/card/v1/authorizations/{auth['id']}").json()["status"] == "expired"
    capture = sim.client.post("/card/v1/captures", json={"authorization_id": auth["id"]})
    assert (capture.status_code, capture.json()["error"]["code"]) == (409, "authorization_expired")


def test_chargeback_is_notified_by_a_signed_webhook(simulator: SimulatorFactory, receiver: Receiver) -> None:
    clock = FixedClock()
    config = SimulatorConfig.for_tests()
    config.providers["card"].webhook_url = f"{receiver.url}/card-webhook"
    config.providers["card"].chargeback_after_seconds = 600
    sim = simulator(config, clock=clock)
    magic = authorize(sim, 8_000, "order-5", card="4000000000000070")  # ...000070: chargeback
    sim.client.post("/card/v1/captures", json={"authorization_id": magic["id"]})
    manual = authorize(sim, 2_000, "order-6")
    sim.client.post("/card/v1/captures", json={"authorization_id": manual["id"]})
    assert sim.client.post(f"/_sim/operations/{manual['id']}/chargeback", json={"amount": 500}).status_code == 200
    clock.advance(timedelta(seconds=601))
    sim.client.post("/_sim/tick")
    deliveries = receiver.wait_for(2)
    events = []
    for delivery in deliveries:
        header = delivery.headers[CARD_SIGNATURE_HEADER.lower()]
        assert verify_signature("whsec_simulator", header, delivery.body, now=int(clock.now().timestamp()))
        events.append(json.loads(delivery.body))
    assert {(e["type"], e["data"]["merchant_reference"], e["data"]["amount"]) for e in events} == {
        ("chargeback.created", "order-5", 8_000),
        ("chargeback.created", "order-6", 500),
    }
