"""AES-256-GCM encryption of stored reports, with key rotation by key id.

``KORA_RECON_REPORT_KEY`` holds one or more urlsafe-base64 32-byte keys, comma-separated; the
first one encrypts, every one decrypts. Each ciphertext is bound (associated data) to where it
is stored, so a blob copied to another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class InvalidReportKey(ValueError):
    """A key is malformed or unknown."""


class DecryptionFailed(ValueError):
    """The ciphertext was altered, or it belongs to another row."""


def key_id(key: bytes) -> str:
    """A public name of a key (not a secret: a truncated hash of it, domain-separated)."""
    return hashlib.sha256(b"kora-recon-report-key:" + key).hexdigest()[:16]


def parse_keys(value: str) -> list[bytes]:
    keys: list[bytes] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            key = base64.urlsafe_b64decode(part.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise InvalidReportKey("KORA_RECON_REPORT_KEY is not urlsafe base64") from None
        if len(key) != 32:
            raise InvalidReportKey("KORA_RECON_REPORT_KEY must decode to 32 bytes")
        keys.append(key)
    if not keys:
        raise InvalidReportKey("KORA_RECON_REPORT_KEY holds no key")
    return keys


class AesGcmReportCipher:
    """Encrypts with the first key; decrypts with the key named by the stored key id."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise InvalidReportKey("at least one key is needed")
        self._keys = {key_id(k): AESGCM(k) for k in keys}
        self._current = key_id(keys[0])

    @classmethod
    def from_setting(cls, value: str) -> AesGcmReportCipher:
        return cls(parse_keys(value))

    @property
    def current_key_id(self) -> str:
        return self._current

    def encrypt(self, plaintext: bytes, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._keys[self._current].encrypt(nonce, plaintext, context.encode())

    def decrypt(self, blob: bytes, *, key_id: str, context: str) -> bytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise InvalidReportKey(f"no key with id {key_id} is configured")
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], context.encode())
        except InvalidTag:
            raise DecryptionFailed("stored ciphertext does not authenticate") from None
