"""Reading old versions of an event as the new one, and publishing both during a deprecation
window (ADR 0020). Pure: standard library and `kora.events.domain` only.

The worked example is `payment.status_changed` v1 → v2: v2 carries every amount as a money
object with its own currency (`{"value": 1500, "currency": "XOF"}`) and groups the parties as
`payer` / `payee` (`{"user_id", "wallet_id"}`, or null for a party outside Kora).

- **Upcasting** (consumers): a consumer written for v2 also reads v1 events — replays of stream
  data written before v2, producers not yet upgraded — by converting them on the way in:
  `upcast_envelope(event, to=2)` after the runtime has verified and validated the original.
- **Dual publish** (producers): while v1 still has readers, the producer records each event in
  both versions (`dual_publish`), from the same function, so the two can never disagree. Both
  twins share the aggregate, so they share an outbox partition and leave in order; they have
  different event ids, so a consumer reading both versions must deduplicate on the business key
  (`payment_id`, `sequence`), never on the event id.
- **Downcasting** (`payment_status_changed_v1`) serves the other half of the window: once the
  producer builds v2 natively, v1 is derived from it until v1's last reader is gone. It refuses
  (`EventError("not_downcastable")`) what v1 cannot say: a fee or capture in another currency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from kora.events.domain import DomainEvent, Envelope, EventError

PAYMENT_STATUS_CHANGED = "payment.status_changed"

Payload = dict[str, Any]
Converter = Callable[[Mapping[str, Any]], Payload]

# v1 fields that v2 regroups; everything else is carried over as it is (additive fields too).
_V1_MONEY = ("amount", "currency", "fee", "captured_amount")
_V1_PARTIES = ("payer_user_id", "payer_wallet_id", "payee_user_id", "payee_wallet_id")
_V2_REGROUPED = ("amount", "fee", "captured", "payer", "payee")


def payment_status_changed_v2(v1: Mapping[str, Any]) -> Payload:
    """The v2 payload of a v1 `payment.status_changed`: lossless, total over valid v1 payloads.

    Used by consumers (upcasting) and by the producer during the dual-publish window, so both
    read the same v2 from the same v1. Properties v1 producers added later (optional, additive)
    are carried over unchanged."""
    currency = v1["currency"]
    v2: Payload = {k: v for k, v in v1.items() if k not in _V1_MONEY and k not in _V1_PARTIES}
    v2["amount"] = _money(v1["amount"], currency)
    v2["fee"] = _money(v1["fee"], currency)
    captured = v1.get("captured_amount")
    v2["captured"] = None if captured is None else _money(captured, currency)
    v2["payer"] = _party(v1.get("payer_user_id"), v1.get("payer_wallet_id"))
    v2["payee"] = _party(v1.get("payee_user_id"), v1.get("payee_wallet_id"))
    return v2


def payment_status_changed_v1(v2: Mapping[str, Any]) -> Payload:
    """The v1 payload of a v2 `payment.status_changed`, for readers of v1 while it is deprecated.
    Raises `EventError("not_downcastable")` when v1 cannot express it (money in two currencies)."""
    amount, fee, captured = v2["amount"], v2["fee"], v2.get("captured")
    currency = amount["currency"]
    for name, money in (("fee", fee), ("captured", captured)):
        if money is not None and money["currency"] != currency:
            raise EventError("not_downcastable", f"{name} in {money['currency']}, amount in {currency}")
    v1: Payload = {k: v for k, v in v2.items() if k not in _V2_REGROUPED}
    v1["amount"] = amount["value"]
    v1["currency"] = currency
    v1["fee"] = fee["value"]
    v1["captured_amount"] = None if captured is None else captured["value"]
    for side in ("payer", "payee"):
        party = v2.get(side) or {}
        v1[f"{side}_user_id"] = party.get("user_id")
        v1[f"{side}_wallet_id"] = party.get("wallet_id")
    return v1


def _money(value: int, currency: str) -> dict[str, Any]:
    return {"value": value, "currency": currency}


def _party(user_id: str | None, wallet_id: str | None) -> dict[str, Any] | None:
    if user_id is None and wallet_id is None:
        return None
    return {"user_id": user_id, "wallet_id": wallet_id}


# (type, version) -> the conversion to version + 1, and to version - 1.
UPCASTERS: Mapping[tuple[str, int], Converter] = {(PAYMENT_STATUS_CHANGED, 1): payment_status_changed_v2}
DOWNCASTERS: Mapping[tuple[str, int], Converter] = {(PAYMENT_STATUS_CHANGED, 2): payment_status_changed_v1}

# Types whose producers publish two versions side by side: (old, new). An entry is removed when
# the old version's last reader is gone (ADR 0020), which ends the window.
DUAL_PUBLISH: Mapping[str, tuple[int, int]] = {PAYMENT_STATUS_CHANGED: (1, 2)}


def latest_version(event_type: str) -> int:
    """The newest version an upcaster chain reaches for `event_type` (1 if none is known)."""
    version = 1
    while (event_type, version) in UPCASTERS:
        version += 1
    return version


def upcast(event_type: str, version: int, payload: Mapping[str, Any], *, to: int | None = None) -> tuple[int, Payload]:
    """`payload` of `event_type` v`version` as v`to` (default: the latest), one step at a time.
    Raises `EventError("not_upcastable")` for a version newer than `to` or a missing step."""
    target = latest_version(event_type) if to is None else to
    if version > target:
        raise EventError("not_upcastable", f"{event_type} v{version} is newer than v{target}")
    current: Payload = dict(payload)
    while version < target:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise EventError("not_upcastable", f"no upcaster from {event_type} v{version}")
        current, version = step(current), version + 1
    return version, current


def downcast(event_type: str, version: int, payload: Mapping[str, Any], *, to: int) -> tuple[int, Payload]:
    """`payload` as the older version `to`; raises `EventError("not_downcastable")`."""
    if version < to:
        raise EventError("not_downcastable", f"{event_type} v{version} is older than v{to}")
    current: Payload = dict(payload)
    while version > to:
        step = DOWNCASTERS.get((event_type, version))
        if step is None:
            raise EventError("not_downcastable", f"no downcaster from {event_type} v{version}")
        current, version = step(current), version - 1
    return version, current


def upcast_envelope(event: Envelope, *, to: int | None = None) -> Envelope:
    """A verified, validated event read as version `to`. The result is a reading of the original,
    not an event: it has no signature (nothing may re-publish or re-verify it) and keeps the
    original id, so `processed_events` still records the event that was delivered."""
    version, payload = upcast(event.type, event.version, event.payload, to=to)
    if version == event.version:
        return event
    return replace(event, version=version, payload=payload, signature=None)


def dual_publish(event: DomainEvent) -> list[DomainEvent]:
    """What a producer records for `event` during its type's deprecation window: the event and
    its twin in the window's other version (same aggregate, same time); `[event]` otherwise.

    The producer keeps building one version (v1 until its model moves, then v2) and derives the
    other here. Raises `EventError` if the twin cannot be built (see `payment_status_changed_v1`):
    a producer must then not publish such a payment on v1 — which is why the window closes
    before the first multi-currency fee is charged."""
    window = DUAL_PUBLISH.get(event.type)
    if window is None or event.version not in window:
        return [event]
    old, new = window
    if event.version == old:
        version, payload = upcast(event.type, old, event.payload, to=new)
    else:
        version, payload = downcast(event.type, new, event.payload, to=old)
    return [event, replace(event, version=version, payload=payload)]
