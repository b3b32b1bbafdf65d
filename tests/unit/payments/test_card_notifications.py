"""Reading the acquirer's notifications: only chargebacks are acted on, their reason is a code
(never free text), and a body of another shape is refused before anything is looked up."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kora.providers.adapters.card import parse_card_notification


def event(**data: Any) -> dict[str, Any]:
    body = {"authorization_id": "auth_1", "merchant_reference": str(uuid.UUID(int=7)), "amount": 500, "currency": "XOF"}
    body.update(data)
    return {"id": "evt_1", "type": "chargeback.created", "data": body}


def test_a_chargeback_is_read_in_our_words() -> None:
    notification = parse_card_notification(event(reason="fraud"))
    assert notification.chargeback is not None
    assert (notification.event_id, notification.chargeback.amount, notification.chargeback.reason) == (
        "evt_1",
        500,
        "fraud",
    )
    assert notification.chargeback.payment_id == uuid.UUID(int=7)


def test_a_reference_that_is_not_ours_and_a_free_text_reason_are_neutralised() -> None:
    notification = parse_card_notification(event(merchant_reference="order-5", reason="call +225 07 00 00 00"))
    assert notification.chargeback is not None
    assert (notification.chargeback.payment_id, notification.chargeback.reason) == (None, "other")


def test_other_events_are_not_acted_on() -> None:
    assert parse_card_notification({"id": "evt_2", "type": "authorization.expired", "data": {}}).chargeback is None


@pytest.mark.parametrize(
    "body",
    [[], {"id": "e"}, event(amount=0), event(amount="500"), event(amount=True), event(authorization_id=None)],
)
def test_malformed_bodies_are_refused(body: Any) -> None:
    with pytest.raises(ValueError, match=r"event|chargeback"):
        parse_card_notification(body)
