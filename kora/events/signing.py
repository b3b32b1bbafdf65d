"""Event signatures: Ed25519 with key ids, so a consumer holding only public keys can check
who wrote an event but cannot forge one (ADR 0018). The first configured key signs; every
configured key (and any extra public key) verifies, which is how keys are rotated.

A key signs for one producer (`kora-core`, `kora-reconciliation`): the verifier refuses an
event signed by a key bound to another producer than the one it names, and an event whose type
belongs to another producer (`producer_of`), so the reconciliation service cannot publish a
payment event and the core cannot publish a reconciliation outcome (ADR 0024)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kora.events.domain import PRODUCER, Envelope, EventError, canonical_json, producer_of


@dataclass(frozen=True, slots=True)
class EventSigner:
    key_id: str
    _key: Ed25519PrivateKey

    def sign(self, envelope: Envelope) -> Envelope:
        return self.sign_to_json(envelope)[0]

    def sign_to_json(self, envelope: Envelope) -> tuple[Envelope, bytes]:
        """The signed envelope and its JSON, serialising the fields once for both (the outbox
        writes this on the payment path)."""
        unsigned = envelope if envelope.key_id == self.key_id else envelope.signed(self.key_id, "")
        data = unsigned.unsigned()
        raw = self._key.sign(canonical_json(data))
        signature = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        data["signature"] = signature
        # The stored form need not be canonical: a verifier re-canonicalises what it parsed.
        return unsigned.signed(self.key_id, signature), json.dumps(
            data, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")


class EventVerifier:
    """`keys`: the public keys by key id; `producers`: the producer each key signs for (a key
    missing from it is not bound to one, for tests and single-producer set-ups)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey], producers: Mapping[str, str] | None = None) -> None:
        self._keys = dict(keys)
        self._producers = dict(producers or {})

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, envelope: Envelope) -> None:
        """Raises `EventError("unsigned" | "unknown_key" | "forged" | "wrong_producer")`."""
        if not envelope.signature or not envelope.key_id:
            raise EventError("unsigned", "the event carries no signature")
        key = self._keys.get(envelope.key_id)
        if key is None:
            raise EventError("unknown_key", f"no verification key {envelope.key_id!r}"[:120])
        try:
            signature = base64.urlsafe_b64decode(envelope.signature + "=" * (-len(envelope.signature) % 4))
            key.verify(signature, envelope.signed(envelope.key_id, "").signing_bytes())
        except (InvalidSignature, ValueError) as exc:
            raise EventError("forged", "the signature does not match the event") from exc
        owner = producer_of(envelope.type)
        if envelope.producer != owner:
            raise EventError("wrong_producer", f"{envelope.type} is published by {owner} only"[:200])
        bound = self._producers.get(envelope.key_id)
        if bound is not None and bound != envelope.producer:
            raise EventError("wrong_producer", f"key {envelope.key_id!r} signs for {bound}"[:200])


def load_signing_keys(raw: str) -> tuple[EventSigner, dict[str, Ed25519PublicKey]]:
    """Parse KORA_EVENT_SIGNING_KEYS (JSON list of {kid, private_key_pem}, Ed25519)."""
    try:
        items = json.loads(raw)
        if not isinstance(items, list) or not items:
            raise ValueError("expected a non-empty JSON list")
        signers: list[EventSigner] = []
        for item in items:
            key = serialization.load_pem_private_key(item["private_key_pem"].encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("event signing keys must be Ed25519")
            signers.append(EventSigner(str(item["kid"]), key))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"KORA_EVENT_SIGNING_KEYS: {exc}") from exc
    return signers[0], {s.key_id: s._key.public_key() for s in signers}


def load_verify_keys(raw: str | None) -> dict[str, Ed25519PublicKey]:
    """Parse KORA_EVENT_VERIFY_KEYS (JSON list of {kid, public_key_pem}); empty when unset."""
    if not raw:
        return {}
    try:
        keys: dict[str, Ed25519PublicKey] = {}
        for item in json.loads(raw):
            key = serialization.load_pem_public_key(item["public_key_pem"].encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("event verification keys must be Ed25519")
            keys[str(item["kid"])] = key
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"KORA_EVENT_VERIFY_KEYS: {exc}") from exc
    return keys


def verify_key_producers(raw: str | None) -> dict[str, str]:
    """The producer each KORA_EVENT_VERIFY_KEYS key signs for: its optional `producer` field,
    `kora-core` when absent (the core's other instances and rotated keys)."""
    if not raw:
        return {}
    try:
        return {str(item["kid"]): str(item.get("producer") or PRODUCER) for item in json.loads(raw)}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"KORA_EVENT_VERIFY_KEYS: {exc}") from exc


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
