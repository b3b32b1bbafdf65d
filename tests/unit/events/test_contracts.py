"""Event contracts (ADR 0020): every schema is valid Draft 2020-12; a released schema never changes
without its lock being updated on purpose; the compatibility checker sees each breaking change;
payment.status_changed v1 is read as v2 by upcasting, and dual-published during its window."""

from __future__ import annotations

import copy
import json
import re
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import kora.events
from kora.events import PRODUCER, DomainEvent, Envelope, EventError
from kora.events.compat import Change, breaking_changes, compare, schema_digest
from kora.events.contracts import known_contracts, validate_envelope, validate_payload
from kora.events.signing import EventSigner, EventVerifier
from kora.events.upcasting import (
    PAYMENT_STATUS_CHANGED,
    dual_publish,
    latest_version,
    payment_status_changed_v1,
    payment_status_changed_v2,
    upcast,
    upcast_envelope,
)

EVENTS_DIR = Path(kora.events.__file__).parent
SCHEMAS_DIR = EVENTS_DIR / "schemas"
LOCK_FILE = EVENTS_DIR / "RELEASED.json"
NAME = re.compile(r"^(?P<type>[a-z_]+\.[a-z_]+)\.v(?P<version>[1-9][0-9]*)$")


def schema_files() -> dict[str, Path]:
    return {p.name.removesuffix(".json"): p for p in sorted(SCHEMAS_DIR.glob("*.json"))}


def repo_path(path: Path) -> str:
    return str(path.relative_to(EVENTS_DIR.parent.parent))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# --------------------------------------------------------------------------- the schemas themselves


@pytest.mark.parametrize("name", sorted(schema_files()))
def test_every_schema_is_a_valid_draft_2020_12_schema_named_after_its_contract(name: str) -> None:
    schema = load(schema_files()[name])
    Draft202012Validator.check_schema(schema)
    match = NAME.match(name)
    assert match, f"{name}.json: schema files are named <module>.<event>.v<N>.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.json")
    assert schema["title"] == f"{match['type']} v{match['version']}"
    assert schema["type"] == "object"
    # Open objects: readers ignore properties they do not know, so adding one is compatible.
    assert schema.get("additionalProperties", True) is True


def test_the_contract_registry_loads_every_schema_file() -> None:
    expected = sorted((m["type"], int(m["version"])) for m in map(NAME.match, schema_files()) if m)
    assert known_contracts() == expected


def test_released_contracts_are_locked() -> None:
    """Fails when a released schema changes, appears or disappears without RELEASED.json saying so."""
    locked: dict[str, str] = json.loads(LOCK_FILE.read_text(encoding="utf-8"))["contracts"]
    files = schema_files()
    problems = []
    for name in sorted(set(locked) - set(files)):
        problems.append(
            f"- {name}: released, but its schema file is gone. Restore it: stored events and replays are "
            "read with it, and readers of that version may still exist (ADR 0020)."
        )
    for name in sorted(set(files) - set(locked)):
        problems.append(
            f'- {name}: a new contract. Once it is final, release it by adding to RELEASED.json: "{name}": '
            f'"{schema_digest(load(files[name]))}"'
        )
    for name in sorted(set(files) & set(locked)):
        digest = schema_digest(load(files[name]))
        if digest != locked[name]:
            problems.append(
                f"- {name}: its schema changed after it was released (sha256 now {digest}).\n"
                f"  Compare it with the released file: git show HEAD:{repo_path(files[name])} > /tmp/old.json"
                f" && kora events compat /tmp/old.json {repo_path(files[name])}\n"
                "  * no breaking change (a new optional property, documentation): put the new sha256 in RELEASED.json;\n"
                "  * a breaking change: revert this file and write the next version (<type>.v<N+1>.json) with its"
                " upcaster and a dual-publish window (kora/events/upcasting.py, ADR 0020)."
            )
    assert not problems, "Event contracts out of step with kora/events/RELEASED.json:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- the compatibility checker

BASE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "amount", "status"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "amount": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "note": {"type": ["string", "null"], "maxLength": 200},
        "status": {"$ref": "#/$defs/status"},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["account_id"],
                "properties": {"account_id": {"type": "string"}, "direction": {"enum": ["debit", "credit"]}},
            },
        },
    },
    "$defs": {"status": {"enum": ["INITIATED", "SETTLED", "FAILED"]}},
}


def changed(edit: Any) -> dict[str, Any]:
    new = copy.deepcopy(BASE)
    edit(new)
    return new


def props(schema: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = schema["properties"]
    return result


BREAKING_EDITS: list[tuple[str, Any, str, str, str]] = [
    # (what, edit, path, kind, who it breaks)
    ("property removed", lambda s: props(s).pop("note"), "$.note", "property_removed", "readers"),
    (
        "required property removed",
        lambda s: (props(s).pop("amount"), s["required"].remove("amount")),
        "$.amount",
        "property_removed",
        "readers",
    ),
    (
        "property newly required",
        lambda s: s["required"].append("currency"),
        "$.currency",
        "property_newly_required",
        "producers",
    ),
    (
        "new property, required",
        lambda s: (props(s).update(fee={"type": "integer"}), s["required"].append("fee")),
        "$.fee",
        "property_added_required",
        "producers",
    ),
    (
        "property no longer required",
        lambda s: s["required"].remove("amount"),
        "$.amount",
        "property_no_longer_required",
        "readers",
    ),
    ("type changed", lambda s: props(s)["amount"].update(type="string"), "$.amount", "type_narrowed", "producers"),
    ("type narrowed", lambda s: props(s)["note"].update(type="string"), "$.note", "type_narrowed", "producers"),
    ("type widened", lambda s: props(s)["id"].update(type=["string", "null"]), "$.id", "type_widened", "readers"),
    (
        "enum value removed",
        lambda s: s["$defs"]["status"]["enum"].remove("FAILED"),
        "$.status",
        "enum_value_removed",
        "producers",
    ),
    (
        "enum value added",
        lambda s: s["$defs"]["status"]["enum"].append("REVERSED"),
        "$.status",
        "enum_value_added",
        "readers",
    ),
    (
        "additionalProperties false",
        lambda s: s.update(additionalProperties=False),
        "$",
        "additional_properties_closed",
        "producers",
    ),
    ("minimum raised", lambda s: props(s)["amount"].update(minimum=100), "$.amount", "minimum_raised", "producers"),
    ("minimum lowered", lambda s: props(s)["amount"].update(minimum=0), "$.amount", "minimum_lowered", "readers"),
    ("maximum lowered", lambda s: props(s)["amount"].update(maximum=1_000), "$.amount", "maximum_lowered", "producers"),
    ("maximum removed", lambda s: props(s)["amount"].pop("maximum"), "$.amount", "maximum_removed", "readers"),
    ("maxLength lowered", lambda s: props(s)["note"].update(maxLength=20), "$.note", "maxLength_lowered", "producers"),
    ("minItems raised", lambda s: props(s)["lines"].update(minItems=2), "$.lines", "minItems_raised", "producers"),
    (
        "pattern changed",
        lambda s: props(s)["currency"].update(pattern="^[A-Z]{3,4}$"),
        "$.currency",
        "pattern_changed",
        "both",
    ),
    ("pattern added", lambda s: props(s)["id"].update(pattern="^[0-9a-f-]+$"), "$.id", "pattern_added", "producers"),
    ("format changed", lambda s: props(s)["id"].update(format="uri"), "$.id", "format_changed", "both"),
    ("format removed", lambda s: props(s)["id"].pop("format"), "$.id", "format_removed", "readers"),
    (
        "nested item type changed",
        lambda s: props(s)["lines"]["items"]["properties"]["account_id"].update(type="integer"),
        "$.lines[].account_id",
        "type_narrowed",
        "producers",
    ),
    (
        "nested enum value removed",
        lambda s: props(s)["lines"]["items"]["properties"]["direction"]["enum"].pop(),
        "$.lines[].direction",
        "enum_value_removed",
        "producers",
    ),
    (
        "unknown keyword",
        lambda s: props(s)["note"].update(contentEncoding="base64"),
        "$.note",
        "unsupported_keyword_changed",
        "both",
    ),
]


@pytest.mark.parametrize(
    ("edit", "path", "kind", "breaks"), [e[1:] for e in BREAKING_EDITS], ids=[e[0] for e in BREAKING_EDITS]
)
def test_the_checker_reports_each_breaking_change(edit: Any, path: str, kind: str, breaks: str) -> None:
    found = breaking_changes(BASE, changed(edit))
    assert any((c.path, c.kind, c.breaks) == (path, kind, breaks) for c in found), found


def test_an_optional_property_and_documentation_are_compatible() -> None:
    new = changed(
        lambda s: (
            props(s).update(merchant_reference={"type": ["string", "null"], "maxLength": 64}),
            props(s)["amount"].update(description="In minor units."),
            s.update(title="renamed", description="Documented at last."),
        )
    )
    assert breaking_changes(BASE, new) == []
    assert compare(BASE, new) == [
        Change("$.merchant_reference", "property_added", "optional: readers ignore what they do not know", None)
    ]
    assert compare(BASE, copy.deepcopy(BASE)) == []


def test_reformatting_a_schema_keeps_its_digest_and_any_edit_changes_it() -> None:
    respaced = json.loads(json.dumps(BASE, indent=4, sort_keys=False))
    assert schema_digest(respaced) == schema_digest(BASE)
    assert schema_digest(changed(lambda s: s.update(description="x"))) != schema_digest(BASE)


def test_an_inlined_definition_is_compared_with_the_reference_it_replaces() -> None:
    inlined = changed(lambda s: props(s).update(status={"enum": ["INITIATED", "SETTLED", "FAILED"]}))
    assert compare(BASE, inlined) == []
    narrowed = changed(lambda s: props(s).update(status={"enum": ["INITIATED", "SETTLED"]}))
    assert [c.kind for c in breaking_changes(BASE, narrowed)] == ["enum_value_removed"]


def test_a_recursive_schema_does_not_loop() -> None:
    tree = {
        "$defs": {
            "node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
        },
        "$ref": "#/$defs/node",
    }
    assert compare(tree, copy.deepcopy(tree)) == []


def test_payment_status_changed_v2_is_a_breaking_change_of_v1_hence_a_new_version() -> None:
    v1, v2 = load(SCHEMAS_DIR / "payment.status_changed.v1.json"), load(SCHEMAS_DIR / "payment.status_changed.v2.json")
    kinds = {(c.path, c.kind) for c in breaking_changes(v1, v2)}
    assert ("$.amount", "type_narrowed") in kinds  # integer -> money object
    assert ("$.currency", "property_removed") in kinds
    assert ("$.payer_user_id", "property_removed") in kinds
    assert ("$.payer", "property_added_required") in kinds


# --------------------------------------------------------------------------- payment.status_changed v1 -> v2

STATUSES = ["INITIATED", "AUTHORIZED", "CAPTURED", "SETTLED", "FAILED", "REVERSED", "CHARGED_BACK"]
ids = st.uuids().map(str)
times = st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
maybe_ids = st.none() | ids
currencies = st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=3)
# Optional in v1, regrouped in v2: absent from a v1 payload, they come back from v2 as null.
REGROUPED_V1 = ("captured_amount", "payer_user_id", "payee_user_id", "payer_wallet_id", "payee_wallet_id")
OPTIONAL_V1 = (
    "captured_amount",
    "provider_ref",
    "payer_user_id",
    "payee_user_id",
    "payer_wallet_id",
    "payee_wallet_id",
    "parent_id",
    "failure_code",
    "captured_at",
    "settlement_due",
)


@st.composite
def v1_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Valid payment.status_changed v1 payloads, including ones that leave optional fields out and
    ones carrying a property added later (additively) by a v1 producer."""
    payload: dict[str, Any] = {
        "payment_id": draw(ids),
        "payment_type": draw(st.sampled_from(["p2p", "cash_in", "cash_out", "merchant", "refund", "card"])),
        "status": draw(st.sampled_from(STATUSES)),
        "previous_status": draw(st.none() | st.sampled_from(STATUSES)),
        "sequence": draw(st.integers(min_value=1, max_value=50)),
        "transitions": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"status": st.sampled_from(STATUSES), "at": times, "reason": st.text(max_size=200)}
                ),
                min_size=1,
                max_size=4,
            )
        ),
        "amount": draw(st.integers(min_value=1, max_value=10**12)),
        "currency": draw(currencies),
        "fee": draw(st.integers(min_value=0, max_value=10**9)),
        "provider": draw(st.none() | st.text(max_size=32)),
    }
    optional: dict[str, Any] = {
        "captured_amount": st.none() | st.integers(min_value=0, max_value=10**12),
        "provider_ref": st.none() | st.text(max_size=128),
        "payer_user_id": maybe_ids,
        "payee_user_id": maybe_ids,
        "payer_wallet_id": maybe_ids,
        "payee_wallet_id": maybe_ids,
        "parent_id": maybe_ids,
        "failure_code": st.none() | st.text(max_size=64),
        "captured_at": st.none() | times,
        "settlement_due": st.none() | times,
    }
    for name in draw(st.sets(st.sampled_from(OPTIONAL_V1))):
        payload[name] = draw(optional[name])
    if draw(st.booleans()):
        payload["merchant_reference"] = draw(st.text(max_size=20))
    return payload


@settings(max_examples=300, deadline=None)
@given(v1_payloads())
def test_every_v1_payload_upcasts_to_a_valid_v2_that_downcasts_back(v1: dict[str, Any]) -> None:
    validate_payload(PAYMENT_STATUS_CHANGED, 1, v1)
    version, v2 = upcast(PAYMENT_STATUS_CHANGED, 1, v1)
    assert version == 2
    validate_payload(PAYMENT_STATUS_CHANGED, 2, v2)
    assert v2["amount"] == {"value": v1["amount"], "currency": v1["currency"]}
    assert v2["fee"]["currency"] == v1["currency"]
    assert v2.get("merchant_reference") == v1.get("merchant_reference")  # additive v1 fields travel on
    # Nothing is lost: back to v1, the payload is the original (absent optionals come back null).
    assert payment_status_changed_v1(v2) == {**dict.fromkeys(REGROUPED_V1), **v1}
    validate_payload(PAYMENT_STATUS_CHANGED, 1, payment_status_changed_v1(v2))


def test_upcasting_groups_money_and_parties() -> None:
    payer, wallet, payee_wallet = (str(uuid.uuid4()) for _ in range(3))
    v1 = v1_example(payer_user_id=payer, payer_wallet_id=wallet, payee_wallet_id=payee_wallet, captured_amount=900)
    v2 = payment_status_changed_v2(v1)
    assert v2["amount"] == {"value": 1_000, "currency": "XOF"}
    assert v2["fee"] == {"value": 10, "currency": "XOF"}
    assert v2["captured"] == {"value": 900, "currency": "XOF"}
    assert v2["payer"] == {"user_id": payer, "wallet_id": wallet}
    assert v2["payee"] == {"user_id": None, "wallet_id": payee_wallet}
    assert payment_status_changed_v2(v1_example())["payer"] is None  # no party inside Kora
    for gone in ("currency", "captured_amount", "payer_user_id", "payer_wallet_id", "payee_user_id", "payee_wallet_id"):
        assert gone not in v2


def test_upcast_refuses_what_it_cannot_do_and_leaves_the_latest_alone() -> None:
    assert latest_version(PAYMENT_STATUS_CHANGED) == 2
    assert latest_version("ledger.transaction_posted") == 1
    v2 = payment_status_changed_v2(v1_example())
    assert upcast(PAYMENT_STATUS_CHANGED, 2, v2) == (2, v2)
    with pytest.raises(EventError) as newer:
        upcast(PAYMENT_STATUS_CHANGED, 3, {}, to=2)
    assert newer.value.reason == "not_upcastable"
    with pytest.raises(EventError):
        upcast("ledger.transaction_posted", 1, {}, to=2)


def test_v1_cannot_say_a_fee_in_another_currency() -> None:
    v2 = payment_status_changed_v2(v1_example(currency="EUR"))
    v2["fee"] = {"value": 650, "currency": "XOF"}
    with pytest.raises(EventError) as refused:
        payment_status_changed_v1(v2)
    assert refused.value.reason == "not_downcastable"


def test_dual_publish_records_both_versions_of_a_payment_event_during_the_window() -> None:
    event = DomainEvent(PAYMENT_STATUS_CHANGED, 1, "payment", str(uuid.uuid4()), v1_example(), datetime.now(UTC))
    v1, v2 = dual_publish(event)
    assert v1 is event
    assert (v2.type, v2.version, v2.aggregate_id, v2.occurred_at) == (
        event.type,
        2,
        event.aggregate_id,
        event.occurred_at,
    )
    validate_payload(PAYMENT_STATUS_CHANGED, 2, v2.payload)
    # A producer that has moved to v2 derives v1 the other way, the same pair comes out.
    assert [e.version for e in dual_publish(v2)] == [2, 1]
    assert dual_publish(v2)[1].payload == v1.payload
    ledger = DomainEvent("ledger.transaction_posted", 1, "journal_transaction", "x", {}, datetime.now(UTC))
    assert dual_publish(ledger) == [ledger]


# --------------------------------------------------------------------------- a v2 consumer reading v1


@dataclass
class PaymentStatusProjection:
    """A consumer written for v2 (e.g. reporting): keeps each payment's latest status and amounts.

    It reads both versions: v1 from streams written before v2 and producers not yet upgraded, v2
    from the others. During the dual-publish window one fact arrives twice under two event ids,
    so it applies a change only if its `sequence` is newer than the one it holds (the business
    key, not the event id, deduplicates across versions)."""

    handles: frozenset[tuple[str, int]] = frozenset({(PAYMENT_STATUS_CHANGED, 1), (PAYMENT_STATUS_CHANGED, 2)})
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: list[uuid.UUID] = field(default_factory=list)

    def handle(self, event: Envelope) -> None:
        assert (event.type, event.version) in self.handles
        view = upcast_envelope(event, to=2)
        payload: Mapping[str, Any] = view.payload
        held = self.rows.get(payload["payment_id"])
        if held is not None and held["sequence"] >= payload["sequence"]:
            return
        self.rows[payload["payment_id"]] = {
            "sequence": payload["sequence"],
            "status": payload["status"],
            "amount": payload["amount"],
            "fee": payload["fee"],
            "payer_wallet": (payload["payer"] or {}).get("wallet_id"),
        }
        self.applied.append(event.id)


def signed(signer: EventSigner, event: DomainEvent) -> Envelope:
    envelope = Envelope(
        id=uuid.uuid4(),
        type=event.type,
        version=event.version,
        occurred_at=event.occurred_at,
        producer=PRODUCER,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        correlation_id="req-1",
        trace={},
        payload=event.payload,
    )
    return signer.sign(envelope)


def test_a_v2_consumer_processes_v1_events_by_upcasting_and_twins_once() -> None:
    key = Ed25519PrivateKey.generate()
    signer, verifier = EventSigner("k1", key), EventVerifier({"k1": key.public_key()})
    payment_id, wallet = str(uuid.uuid4()), str(uuid.uuid4())
    at = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)

    def fact(sequence: int, status: str) -> DomainEvent:
        payload = v1_example(payment_id=payment_id, sequence=sequence, status=status, payer_wallet_id=wallet)
        return DomainEvent(PAYMENT_STATUS_CHANGED, 1, "payment", payment_id, payload, at)

    old_stream = [signed(signer, fact(1, "CAPTURED"))]  # written before v2 existed: v1 only
    window = [signed(signer, e) for e in dual_publish(fact(2, "SETTLED"))]  # v1 and v2 twins
    consumer = PaymentStatusProjection()
    for delivered in [envelope_from_wire(e) for e in old_stream + window]:
        verifier.verify(delivered)  # what the runtime does before the handler
        validate_envelope(delivered)
        consumer.handle(delivered)
        consumer.handle(delivered)  # a redelivery changes nothing

    assert consumer.applied == [old_stream[0].id, window[0].id]
    assert consumer.rows[payment_id] == {
        "sequence": 2,
        "status": "SETTLED",
        "amount": {"value": 1_000, "currency": "XOF"},
        "fee": {"value": 10, "currency": "XOF"},
        "payer_wallet": wallet,
    }


def test_an_upcast_event_is_a_reading_not_an_event() -> None:
    key = Ed25519PrivateKey.generate()
    signer, verifier = EventSigner("k1", key), EventVerifier({"k1": key.public_key()})
    original = signed(signer, DomainEvent(PAYMENT_STATUS_CHANGED, 1, "payment", "p", v1_example(), datetime.now(UTC)))
    view = upcast_envelope(original, to=2)
    assert (view.id, view.version, view.signature) == (original.id, 2, None)
    validate_envelope(view)
    with pytest.raises(EventError) as unsigned:
        verifier.verify(view)  # nothing can pass the reading off as a signed event
    assert unsigned.value.reason == "unsigned"
    assert upcast_envelope(original, to=1) is original


def envelope_from_wire(envelope: Envelope) -> Envelope:
    from kora.events import envelope_from_json

    return envelope_from_json(envelope.to_json())


def v1_example(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "payment_id": str(uuid.uuid4()),
        "payment_type": "p2p",
        "status": "SETTLED",
        "previous_status": "CAPTURED",
        "sequence": 4,
        "transitions": [{"status": "SETTLED", "at": "2026-11-25T09:30:00+00:00", "reason": "posted to ledger"}],
        "amount": 1_000,
        "currency": "XOF",
        "fee": 10,
        "captured_amount": None,
        "provider": None,
        "provider_ref": None,
        "payer_user_id": None,
        "payee_user_id": None,
        "payer_wallet_id": None,
        "payee_wallet_id": None,
        "parent_id": None,
        "failure_code": None,
        "captured_at": None,
        "settlement_due": None,
    }
    payload.update(overrides)
    return payload
