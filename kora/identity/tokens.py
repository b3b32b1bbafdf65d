"""Issuing a session's token pair: a short-lived signed access token, and an opaque refresh
token that is stored only as its SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from kora.identity.domain import AccessClaims, AuthSession, RefreshTokenRecord, TokenPair, UserRecord
from kora.identity.ports import IdentitySettings, RefreshTokenStore, TokenSigner
from kora.kernel import new_id


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenIssuer:
    def __init__(self, *, signer: TokenSigner, settings: IdentitySettings) -> None:
        self._signer = signer
        self._settings = settings

    async def add_refresh_token(self, store: RefreshTokenStore, session_id: uuid.UUID, now: datetime) -> str:
        """A new refresh token of the session (256 random bits), stored by hash; returns it."""
        token = secrets.token_urlsafe(32)
        await store.add(
            RefreshTokenRecord(
                token_hash=hash_refresh_token(token),
                session_id=session_id,
                issued_at=now,
                expires_at=now + timedelta(seconds=self._settings.refresh_token_ttl_seconds),
            )
        )
        return token

    def token_pair(self, user: UserRecord, session: AuthSession, refresh_token: str, now: datetime) -> TokenPair:
        ttl = self._settings.access_token_ttl_seconds
        access_token = self._signer.sign(
            AccessClaims(
                user_id=user.id,
                session_id=session.id,
                device_id=session.device_id,
                roles=user.roles,
                issued_at=now,
                expires_at=now + timedelta(seconds=ttl),
                token_id=new_id().hex,
            )
        )
        return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=ttl)
