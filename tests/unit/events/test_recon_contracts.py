"""The reconciliation service's outcome contracts (reconciliation.settlement_confirmed v1,
reconciliation.mismatch_confirmed v1): what they accept and refuse, that they carry no PII,
and who may publish them — each contract family has one producer, each key signs for one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kora.events import PRODUCER, DomainEvent, EventError, Origin
from kora.events.adapters.outbox import envelope_for
from kora.events.contracts import schema_of, validate_payload
from kora.events.domain import RECONCILIATION_PRODUCER, producer_of
from kora.events.signing import EventSigner, EventVerifier, public_key_pem, verify_key_producers
from kora.kernel import FixedClock

SCHEMAS = Path(__file__).resolve().parents[3] / "kora" / "events" / "schemas"
SETTLED = ("reconciliation.settlement_confirmed", 1)
FLAGGED = ("reconciliation.mismatch_confirmed", 1)


def settled(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "report_id": str(uuid.uuid4()),
        "provider": "momo",
        "currency": "XOF",
        "report_day": "2026-03-10",
        "reference": f"recon:momo:{uuid.uuid4()}",
        "chunk": 1,
        "chunks": 1,
        "payments": [{"payment_id": str(uuid.uuid4()), "amount": 10_000, "fee": -100, "net": 9_900}],
    }
    payload.update(changes)
    return payload


def flagged(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "case_id": str(uuid.uuid4()),
        "payment_id": str(uuid.uuid4()),
        "outcome": "MISMATCH",
        "reason": "amount",
        "amount": 4_000,
        "currency": "XOF",
    }
    payload.update(changes)
    return payload


def test_the_outcome_contracts_accept_what_the_service_writes() -> None:
    validate_payload(*SETTLED, settled())
    validate_payload(
        *SETTLED, settled(report_day=None, payments=[{"payment_id": str(uuid.uuid4()), "amount": 1, "fee": None}])
    )
    validate_payload(*SETTLED, settled(payments=[{"payment_id": str(uuid.uuid4()), "amount": 5, "fee": 0}] * 1000))
    validate_payload(*FLAGGED, flagged())
    validate_payload(*FLAGGED, flagged(outcome="MISSING_PROVIDER", reason=None, amount=None, currency=None))
    validate_payload(*FLAGGED, flagged(unknown_later_field=1))  # readers tolerate what they do not know


@pytest.mark.parametrize(
    ("contract", "payload"),
    [
        (SETTLED, settled(payments=[])),
        (SETTLED, settled(payments=[{"payment_id": str(uuid.uuid4()), "amount": 5, "fee": 0}] * 1001)),
        (SETTLED, settled(payments=[{"payment_id": "not-a-uuid", "amount": 5, "fee": 0}])),
        (SETTLED, settled(payments=[{"payment_id": str(uuid.uuid4()), "amount": 0, "fee": 0}])),
        (SETTLED, settled(currency="xof")),
        (SETTLED, settled(reference="report of 10 March")),
        (SETTLED, settled(chunk=0)),
        (SETTLED, {k: v for k, v in settled().items() if k != "reference"}),
        (FLAGGED, flagged(outcome="MATCHED")),
        (FLAGGED, flagged(reason="The amounts differ")),
        (FLAGGED, flagged(amount=0)),
        (FLAGGED, flagged(case_id="case-1")),
        (FLAGGED, {k: v for k, v in flagged().items() if k != "payment_id"}),
    ],
)
def test_the_outcome_contracts_refuse_what_no_reader_can_apply(
    contract: tuple[str, int], payload: dict[str, Any]
) -> None:
    with pytest.raises(EventError) as refused:
        validate_payload(*contract, payload)
    assert refused.value.reason == "contract_violation"


@pytest.mark.parametrize("contract", [SETTLED, FLAGGED])
def test_the_outcome_contracts_name_no_personal_data(contract: tuple[str, int]) -> None:
    names = _property_names(schema_of(*contract))
    assert {"payment_id", "amount"} <= names
    for name in names:
        assert not any(
            word in name for word in ("phone", "msisdn", "name", "email", "account", "payer", "raw", "detail")
        )
    assert (SCHEMAS / f"{contract[0]}.v{contract[1]}.json").exists()


def _property_names(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = set(schema.get("properties", {})) if isinstance(schema.get("properties"), dict) else set()
        for value in schema.values():
            found |= _property_names(value)
        return found
    if isinstance(schema, list):
        return set().union(*(_property_names(v) for v in schema)) if schema else set()
    return set()


def test_each_contract_family_has_one_producer() -> None:
    assert producer_of("reconciliation.settlement_confirmed") == RECONCILIATION_PRODUCER
    assert producer_of("reconciliation.mismatch_confirmed") == RECONCILIATION_PRODUCER
    assert producer_of("payment.status_changed") == PRODUCER
    assert producer_of("ledger.transaction_posted") == PRODUCER


def _event(event_type: str, payload: dict[str, Any]) -> DomainEvent:
    return DomainEvent(event_type, 1, "x", "agg-1", payload, FixedClock().now())


def test_a_key_signs_for_its_producer_only() -> None:
    core_key, recon_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    core, recon = EventSigner("core-1", core_key), EventSigner("recon-1", recon_key)
    raw = json.dumps(
        [
            {"kid": "core-1", "public_key_pem": public_key_pem(core_key.public_key())},
            {
                "kid": "recon-1",
                "public_key_pem": public_key_pem(recon_key.public_key()),
                "producer": RECONCILIATION_PRODUCER,
            },
        ]
    )
    assert verify_key_producers(raw) == {"core-1": PRODUCER, "recon-1": RECONCILIATION_PRODUCER}
    verifier = EventVerifier(
        {"core-1": core_key.public_key(), "recon-1": recon_key.public_key()}, producers=verify_key_producers(raw)
    )
    outcome = _event(SETTLED[0], settled())
    payment = _event("identity.user_registered", {"user_id": str(uuid.uuid4()), "roles": []})

    verifier.verify(envelope_for(outcome, Origin(), recon, producer=RECONCILIATION_PRODUCER))
    verifier.verify(envelope_for(payment, Origin(), core))
    refused = [
        envelope_for(outcome, Origin(), core, producer=RECONCILIATION_PRODUCER),  # core key, recon's name
        envelope_for(outcome, Origin(), core),  # the core publishing a recon outcome
        envelope_for(payment, Origin(), recon),  # recon key, core's name
        envelope_for(payment, Origin(), recon, producer=RECONCILIATION_PRODUCER),  # recon publishing a core event
    ]
    for envelope in refused:
        with pytest.raises(EventError) as error:
            verifier.verify(envelope)
        assert error.value.reason == "wrong_producer"
