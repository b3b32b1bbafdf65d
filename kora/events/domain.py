"""Events as Kora publishes them: the envelope, its canonical (signed) form and its subject.

Pure: standard library only. An event is a fact that already happened, announced by the module
that owns it, in the same database transaction as the state change (the outbox, ADR 0018). Its
payload carries ids, amounts and codes — never a phone number, a name or any other PII.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

SUBJECT_PREFIX = "kora.events"
DLQ_PREFIX = "kora.dlq"
PRODUCER = "kora-core"
RECONCILIATION_PRODUCER = "kora-reconciliation"
# Who may publish each family of contracts (the type's first word); every other type is the core's.
_PRODUCER_OF_FAMILY = {"reconciliation": RECONCILIATION_PRODUCER}
OUTBOX_PARTITIONS = 16


class EventError(Exception):
    """An event that cannot be read: malformed, unsigned, forged, or not of a known contract."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """What a module records: the fact, before it is enveloped and signed."""

    type: str
    version: int
    aggregate_type: str
    aggregate_id: str
    payload: Mapping[str, Any]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event comes from: the request's correlation id and W3C trace context."""

    correlation_id: str | None = None
    trace: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The event on the wire and in the outbox. `signature` covers every other field."""

    id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    producer: str
    aggregate_type: str
    aggregate_id: str
    correlation_id: str | None
    trace: Mapping[str, str]
    payload: Mapping[str, Any]
    key_id: str | None = None
    signature: str | None = None

    @property
    def subject(self) -> str:
        return subject_for(self.type, self.version)

    @property
    def partition(self) -> int:
        return partition_of(self.aggregate_id)

    def unsigned(self) -> dict[str, Any]:
        """Every field but the signature, as JSON-ready values."""
        return {
            "id": str(self.id),
            "type": self.type,
            "version": self.version,
            "occurred_at": _iso(self.occurred_at),
            "producer": self.producer,
            "aggregate": {"type": self.aggregate_type, "id": self.aggregate_id},
            "correlation_id": self.correlation_id,
            "trace": dict(self.trace),
            "key_id": self.key_id,
            "payload": dict(self.payload),
        }

    def signing_bytes(self) -> bytes:
        """The canonical bytes a signature covers: sorted keys, no spaces, UTF-8."""
        return canonical_json(self.unsigned())

    def to_json(self) -> bytes:
        data = self.unsigned()
        data["signature"] = self.signature
        return canonical_json(data)

    def signed(self, key_id: str, signature: str) -> Envelope:
        return replace(self, key_id=key_id, signature=signature)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def subject_for(event_type: str, version: int) -> str:
    """`kora.events.<type>.v<version>`: one subject per contract, so a consumer subscribes to
    the versions it understands."""
    return f"{SUBJECT_PREFIX}.{event_type}.v{version}"


def producer_of(event_type: str) -> str:
    """The one producer allowed to publish `event_type`: `reconciliation.*` is the
    reconciliation service's, everything else the core's. A verifier refuses an event whose
    `producer` is not this one, so one service can never speak in another's name."""
    return _PRODUCER_OF_FAMILY.get(event_type.split(".", 1)[0], PRODUCER)


def dlq_subject_for(consumer: str) -> str:
    return f"{DLQ_PREFIX}.{consumer}"


def partition_of(aggregate_id: str) -> int:
    """A stable partition for an aggregate: one relay at a time owns a partition, so the
    events of one aggregate are published in the order they were written."""
    return zlib.crc32(aggregate_id.encode("utf-8")) % OUTBOX_PARTITIONS


def envelope_from_json(raw: bytes | str) -> Envelope:
    """Parse an envelope; raises `EventError("malformed", ...)` for anything that is not one."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError("malformed", "not JSON") from exc
    if not isinstance(data, dict):
        raise EventError("malformed", "not a JSON object")
    try:
        aggregate = data["aggregate"]
        trace = data.get("trace") or {}
        payload = data["payload"]
        if not isinstance(aggregate, dict) or not isinstance(trace, dict) or not isinstance(payload, dict):
            raise TypeError("aggregate, trace and payload must be objects")
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise TypeError("version must be an integer")
        return Envelope(
            id=uuid.UUID(data["id"]),
            type=str(data["type"]),
            version=version,
            occurred_at=_parse_time(data["occurred_at"]),
            producer=str(data["producer"]),
            aggregate_type=str(aggregate["type"]),
            aggregate_id=str(aggregate["id"]),
            correlation_id=data.get("correlation_id"),
            trace={str(k): str(v) for k, v in trace.items()},
            payload=payload,
            key_id=data.get("key_id"),
            signature=data.get("signature"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError("malformed", f"{type(exc).__name__}: {exc}"[:200]) from exc


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError("occurred_at must be a string")
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError("occurred_at must carry a time zone")
    return at.astimezone(UTC)
