"""Cryptography adapters: Argon2id password hashing, AES-256-GCM encryption of PII with key
rotation, and the HMAC-SHA256 blind index."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

import argon2
from argon2 import profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from loguru import logger

from kora.identity.ports import ThrottleScope
from kora.platform.settings import ConfigurationError


class Argon2PasswordHasher:
    """Argon2id through argon2-cffi. Defaults are RFC 9106's low-memory profile (t=3, m=64 MiB,
    p=4); tests pass cheap parameters. Hashing runs in a worker thread, off the event loop."""

    def __init__(
        self, *, time_cost: int | None = None, memory_cost: int | None = None, parallelism: int | None = None
    ) -> None:
        base = profiles.RFC_9106_LOW_MEMORY
        parameters = dataclasses.replace(
            base,
            time_cost=base.time_cost if time_cost is None else time_cost,
            memory_cost=base.memory_cost if memory_cost is None else memory_cost,
            parallelism=base.parallelism if parallelism is None else parallelism,
        )
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            logger.warning("stored password hash is unreadable; refusing the login")
            return False

    async def verify_dummy(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(24))
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


def decode_key(text: str, *, name: str, min_bytes: int = 32) -> bytes:
    """A urlsafe-base64 key (padding optional) of at least `min_bytes` bytes."""
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{name} must be urlsafe-base64") from exc
    if len(key) < min_bytes:
        raise ConfigurationError(f"{name} keys must be at least {min_bytes} bytes")
    return key


class PiiDecryptionError(Exception):
    """A ciphertext that no configured key opens (wrong key, wrong context, or tampered)."""


_FORMAT_VERSION = b"\x01"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12


class AesGcmPiiCipher:
    """AES-256-GCM with a random 96-bit nonce. Layout: version (1) | key id (4) | nonce (12) |
    ciphertext+tag. The key id is a fingerprint of the key, so keys can be reordered; the first
    key encrypts, every key decrypts (rotation: prepend the new key, re-encrypt, drop the old).
    The context is authenticated as associated data."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("at least one PII encryption key is needed")
        self._keys: dict[bytes, AESGCM] = {}
        for key in keys:
            if len(key) != 32:
                raise ConfigurationError("PII encryption keys must be 32 bytes (AES-256)")
            key_id = hashlib.sha256(b"kora-pii-key-id:" + key).digest()[:_KEY_ID_BYTES]
            if key_id in self._keys:
                raise ConfigurationError("duplicate PII encryption key")
            self._keys[key_id] = AESGCM(key)
        self._current_id = next(iter(self._keys))

    @classmethod
    def from_setting(cls, value: str) -> AesGcmPiiCipher:
        """From KORA_PII_ENCRYPTION_KEY: comma-separated urlsafe-base64 32-byte keys."""
        parts = [part for part in value.split(",") if part.strip()]
        return cls([decode_key(part, name="KORA_PII_ENCRYPTION_KEY") for part in parts])

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        header = _FORMAT_VERSION + self._current_id
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, plaintext.encode("utf-8"), header + context.encode())
        return header + nonce + sealed

    def decrypt(self, ciphertext: bytes, *, context: str) -> str:
        header_length = 1 + _KEY_ID_BYTES
        header = ciphertext[:header_length]
        nonce = ciphertext[header_length : header_length + _NONCE_BYTES]
        aead = self._keys.get(header[1:])
        if header[:1] != _FORMAT_VERSION or aead is None:
            raise PiiDecryptionError("unknown ciphertext version or key")
        try:
            plaintext = aead.decrypt(nonce, ciphertext[header_length + _NONCE_BYTES :], header + context.encode())
        except InvalidTag:
            raise PiiDecryptionError("ciphertext does not authenticate") from None
        return plaintext.decode("utf-8")

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether the ciphertext is under the current key (False → re-encrypt it)."""
        return ciphertext[1 : 1 + _KEY_ID_BYTES] == self._current_id


class HmacBlindIndex:
    """HMAC-SHA256 under KORA_PII_INDEX_KEY. Changing that key orphans every index: it is not
    rotated like the encryption keys (a re-index job would decrypt and recompute)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ConfigurationError("the blind index key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_setting(cls, value: str) -> HmacBlindIndex:
        return cls(decode_key(value, name="KORA_PII_INDEX_KEY"))

    def phone(self, e164: str) -> bytes:
        return hmac.new(self._key, e164.encode("utf-8"), hashlib.sha256).digest()

    def throttle_key(self, scope: ThrottleScope, value: str) -> str:
        # A distinct message prefix separates these from phone indexes (which start with "+").
        message = f"kora/login-throttle/{scope}/{value}".encode()
        return f"{scope}:{hmac.new(self._key, message, hashlib.sha256).hexdigest()}"
