"""The producers against their contracts, through the real app on SQLite and PostgreSQL: run the
money flows over HTTP, then read every outbox row and check that each envelope is signed, keeps
its contract, tells each payment's status history, balances its ledger postings, carries no PII,
and carries the request's trace context and correlation id (ADRs 0018, 0020)."""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kora.events import Envelope, envelope_from_json
from kora.events.adapters.tables import event_outbox
from kora.events.contracts import validate_envelope
from tests.support.api import Api, Customer, new_phone

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass
class Traffic:
    """What the flows did: who took part, and which request made which payment."""

    people: list[Customer] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    correlation_of_payment: dict[str, str] = field(default_factory=dict)
    correlation_of_user: dict[str, str] = field(default_factory=dict)
    reader_of_payment: dict[str, Customer] = field(default_factory=dict)
    refused_correlations: list[str] = field(default_factory=list)

    def paid(self, response: httpx.Response, reader: Customer) -> dict[str, Any]:
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        self.correlation_of_payment[body["id"]] = response.headers["X-Correlation-ID"]
        self.reader_of_payment[body["id"]] = reader
        return body


async def register(api: Api, traffic: Traffic, name: str) -> Customer:
    """A customer with a display name (which must never reach an event), logged in."""
    phone, password = new_phone(), "correct-horse-" + uuid.uuid4().hex[:10]
    response = await api.client.post(
        "/v1/auth/register", json={"phone_number": phone, "password": password, "display_name": name}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    customer = Customer(phone, password, "device-" + uuid.uuid4().hex[:8], body["user_id"], body["wallet_id"])
    assert (await api.login(customer)).status_code == 200
    traffic.people.append(customer)
    traffic.names.append(name)
    traffic.correlation_of_user[customer.user_id] = response.headers["X-Correlation-ID"]
    return customer


async def run_flows(api: Api) -> Traffic:
    traffic = Traffic()
    alice = await register(api, traffic, "Aïcha Kouassi-Zébré")
    bob = await register(api, traffic, "Bakary Traoré-Yéo")
    carol = await register(api, traffic, "Clémentine N'Guessan")
    merchant = await api.merchant()
    traffic.people.append(merchant)

    traffic.paid(await api.cash_in(alice, 10_000), alice)
    traffic.paid(await api.cash_in(carol, 20_000), carol)
    mine = "req-" + uuid.uuid4().hex  # a caller's own correlation id is kept, on the events too
    sent = await api.client.post(
        "/v1/transfers",
        json={"recipient_phone_number": bob.phone_number, "amount": 2_500, "note": "loyer"},
        headers={**alice.headers(key=uuid.uuid4().hex), "X-Correlation-ID": mine},
    )
    assert sent.headers["X-Correlation-ID"] == mine
    traffic.paid(sent, alice)
    traffic.paid(await api.cash_out(alice, 1_000), alice)

    refused = await api.transfer(bob, recipient_wallet_id=alice.wallet_id, amount=1_000_000)
    assert (refused.status_code, refused.json()["code"]) == (422, "insufficient_funds")
    traffic.refused_correlations.append(refused.headers["X-Correlation-ID"])

    sale = traffic.paid(await api.pay_merchant(carol, merchant.merchant_id, 10_000, reference="order-42"), carol)
    traffic.paid(await api.refund(merchant, sale["id"], 3_000), carol)
    return traffic


async def outbox(api: Api) -> list[tuple[Any, Envelope]]:
    kora: Any = api.kora  # type: ignore[attr-defined]
    async with kora.engine.connect() as conn:
        rows = list(await conn.execute(sa.select(event_outbox).order_by(event_outbox.c.seq)))
    return [(row, envelope_from_json(row.envelope)) for row in rows]


async def test_producers_keep_their_contracts_through_the_real_flows(api: Api, spans: InMemorySpanExporter) -> None:
    traffic = await run_flows(api)
    rows = await outbox(api)
    verifier = api.kora.event_verifier  # type: ignore[attr-defined]
    assert rows

    # Signed, valid, and filed where the relay will look for it.
    for row, envelope in rows:
        verifier.verify(envelope)
        validate_envelope(envelope)
        assert (row.event_id, row.type, row.version) == (envelope.id, envelope.type, envelope.version)
        assert (row.subject, row.partition, row.aggregate_id) == (
            envelope.subject,
            envelope.partition,
            envelope.aggregate_id,
        )
        assert row.subject == f"kora.events.{envelope.type}.v{envelope.version}"

    events = [envelope for _, envelope in rows]
    by_type: dict[str, list[Envelope]] = defaultdict(list)
    for envelope in events:
        by_type[envelope.type].append(envelope)
    assert set(by_type) == {"identity.user_registered", "payment.status_changed", "ledger.transaction_posted"}

    await check_payment_histories(api, traffic, by_type["payment.status_changed"])
    check_ledger_postings(traffic, by_type["ledger.transaction_posted"])
    check_no_pii(traffic, [row.envelope for row, _ in rows])
    check_origins(traffic, events, {f"{span.context.trace_id:032x}" for span in spans.get_finished_spans()})


async def check_payment_histories(api: Api, traffic: Traffic, events: list[Envelope]) -> None:
    """Each payment's events, in sequence, tell exactly its status history."""
    by_payment: dict[str, list[Envelope]] = defaultdict(list)
    for event in events:
        assert event.aggregate_type == "payment"
        assert event.aggregate_id == event.payload["payment_id"]
        by_payment[event.payload["payment_id"]].append(event)
    assert set(by_payment) == set(traffic.correlation_of_payment)  # the refused transfer made none

    for payment_id, reader in traffic.reader_of_payment.items():
        seen = await api.client.get(f"/v1/payments/{payment_id}", headers=reader.headers())
        assert seen.status_code == 200, seen.text
        payment = seen.json()
        history = [h["status"] for h in payment["status_history"]]
        told = sorted(by_payment[payment_id], key=lambda e: e.payload["sequence"])
        assert [t["status"] for e in told for t in e.payload["transitions"]] == history, payment_id
        assert told[-1].payload["sequence"] == len(history)
        assert told[-1].payload["status"] == payment["status"]
        before: str | None = None
        for event in told:
            payload = event.payload
            assert payload["previous_status"] == before
            assert payload["status"] == payload["transitions"][-1]["status"]
            assert (payload["amount"], payload["currency"]) == (payment["amount"], payment["currency"])
            assert payload["payment_type"] == payment["type"]
            before = payload["status"]


def check_ledger_postings(traffic: Traffic, events: list[Envelope]) -> None:
    """Every posting balances, per currency, and belongs to a payment of the flows."""
    assert events
    for event in events:
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for entry in event.payload["entries"]:
            totals[(entry["currency"], entry["direction"])] += entry["amount"]
        for currency in {c for c, _ in totals}:
            assert totals[(currency, "debit")] == totals[(currency, "credit")], event.payload
        assert event.payload["payment_id"] in traffic.correlation_of_payment
        assert event.aggregate_id == event.payload["payment_id"]  # shares the payment's partition


def check_no_pii(traffic: Traffic, raw_envelopes: list[str]) -> None:
    """No phone number (in any spelling) and no display name, anywhere in any envelope."""
    forbidden = ["+225", *traffic.names]
    for person in traffic.people:
        forbidden += [person.phone_number, person.phone_number.removeprefix("+"), person.phone_number[4:]]
    for raw in raw_envelopes:
        decoded = json.dumps(json.loads(raw), ensure_ascii=False)  # also catches \\u-escaped names
        for text in (raw, decoded):
            for secret in forbidden:
                assert secret not in text, f"PII {secret!r} in an event: {raw[:200]}"


def check_origins(traffic: Traffic, events: list[Envelope], traced: set[str]) -> None:
    """Events made under a request carry its correlation id and its W3C trace context: the trace
    of that request (one trace id per correlation id, one the app really recorded)."""
    trace_of: dict[str, str] = {}
    for event in events:
        if event.type == "identity.user_registered":
            expected = traffic.correlation_of_user.get(event.payload["user_id"])
            if expected is None:  # the admin and the merchant's role grant are not HTTP registrations
                continue
        else:
            payment_id = event.payload["payment_id"]
            expected = traffic.correlation_of_payment[payment_id]
        assert event.correlation_id == expected, (event.type, event.payload)
        traceparent = event.trace.get("traceparent", "")
        assert TRACEPARENT.match(traceparent), (event.type, event.trace)
        trace_id = traceparent.split("-")[1]
        assert trace_id in traced
        assert trace_of.setdefault(expected, trace_id) == trace_id, "one request, one trace"
    assert len(set(trace_of.values())) == len(trace_of), "each request its own trace"
    assert not {e.correlation_id for e in events} & set(traffic.refused_correlations)
