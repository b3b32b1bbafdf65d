"""Events: the transactional outbox, the relay, the bus port (embedded stream and NATS
JetStream), the consumer runtime with processed events and dead letters, and replay.

Other modules record facts through :class:`EventRecorder` (their repositories do, in the
transaction of the state change); the composition root writes them to the outbox on commit.
"""

from kora.events.domain import (
    DLQ_PREFIX,
    OUTBOX_PARTITIONS,
    PRODUCER,
    SUBJECT_PREFIX,
    DomainEvent,
    Envelope,
    EventError,
    Origin,
    canonical_json,
    dlq_subject_for,
    envelope_from_json,
    partition_of,
    subject_for,
)
from kora.events.recorder import EventRecorder, current_origin

__all__ = [
    "DLQ_PREFIX",
    "OUTBOX_PARTITIONS",
    "PRODUCER",
    "SUBJECT_PREFIX",
    "DomainEvent",
    "Envelope",
    "EventError",
    "EventRecorder",
    "Origin",
    "canonical_json",
    "current_origin",
    "dlq_subject_for",
    "envelope_from_json",
    "partition_of",
    "subject_for",
]
