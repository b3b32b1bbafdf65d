"""SQLAlchemy Core adapters of identity's repositories, on the unit of work's connection.
They execute and flush; the use case commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from kora.events import DomainEvent, EventRecorder
from kora.identity.adapters.tables import auth_sessions, login_throttle, refresh_tokens, user_roles, users
from kora.identity.domain import (
    AuthSession,
    PhoneNumberTaken,
    RefreshTokenRecord,
    Role,
    ThrottleState,
    UserRecord,
)


class SqlUserRepository:
    def __init__(self, conn: AsyncConnection, *, events: EventRecorder | None = None) -> None:
        self._conn = conn
        # A new user is announced in the transaction that creates it (the outbox): its id and
        # roles only, never its phone number or name.
        self._events = events

    async def add(self, user: UserRecord) -> None:
        try:
            # A savepoint, so a unique violation leaves the caller's transaction usable.
            async with self._conn.begin_nested():
                await self._conn.execute(
                    users.insert().values(
                        id=user.id,
                        phone_index=user.phone_index,
                        phone_ciphertext=user.phone_ciphertext,
                        display_name_ciphertext=user.display_name_ciphertext,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                        password_changed_at=user.created_at,
                    )
                )
        except IntegrityError as exc:
            if "phone_index" in str(exc.orig):
                raise PhoneNumberTaken() from None
            raise
        if user.roles:
            await self._conn.execute(
                user_roles.insert(),
                [{"user_id": user.id, "role": role.value, "granted_at": user.created_at} for role in user.roles],
            )
        if self._events is not None:
            self._events.record(
                DomainEvent(
                    type="identity.user_registered",
                    version=1,
                    aggregate_type="user",
                    aggregate_id=str(user.id),
                    payload={"user_id": str(user.id), "roles": sorted(r.value for r in user.roles)},
                    occurred_at=user.created_at,
                )
            )

    async def get(self, user_id: uuid.UUID) -> UserRecord | None:
        return await self._one(users.c.id == user_id)

    async def get_by_phone_index(self, phone_index: bytes) -> UserRecord | None:
        return await self._one(users.c.phone_index == phone_index)

    async def update_password_hash(self, user_id: uuid.UUID, password_hash: str, *, at: datetime) -> None:
        await self._conn.execute(
            users.update().where(users.c.id == user_id).values(password_hash=password_hash, password_changed_at=at)
        )

    async def grant_role(self, user_id: uuid.UUID, role: Role, *, at: datetime) -> bool:
        insert = (postgresql.insert if self._conn.dialect.name == "postgresql" else sqlite.insert)(user_roles)
        result = await self._conn.execute(
            insert.values(user_id=user_id, role=role.value, granted_at=at)
            .on_conflict_do_nothing(index_elements=["user_id", "role"])
            .returning(user_roles.c.role)
        )
        return result.first() is not None

    async def _one(self, condition: sa.ColumnElement[bool]) -> UserRecord | None:
        row = (await self._conn.execute(sa.select(users).where(condition))).one_or_none()
        if row is None:
            return None
        roles = (await self._conn.execute(sa.select(user_roles.c.role).where(user_roles.c.user_id == row.id))).scalars()
        return UserRecord(
            id=row.id,
            phone_index=row.phone_index,
            phone_ciphertext=row.phone_ciphertext,
            display_name_ciphertext=row.display_name_ciphertext,
            password_hash=row.password_hash,
            roles=_roles(roles),
            created_at=row.created_at,
        )


def _roles(names: Iterable[str]) -> frozenset[Role]:
    return frozenset(Role(name) for name in names)


class SqlRefreshTokenStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def open_session(self, session: AuthSession) -> None:
        await self._conn.execute(
            auth_sessions.insert().values(
                id=session.id,
                user_id=session.user_id,
                device_id=session.device_id,
                created_at=session.created_at,
                revoked_at=session.revoked_at,
            )
        )

    async def get_session(self, session_id: uuid.UUID) -> AuthSession | None:
        row = (await self._conn.execute(sa.select(auth_sessions).where(auth_sessions.c.id == session_id))).one_or_none()
        if row is None:
            return None
        return AuthSession(
            id=row.id,
            user_id=row.user_id,
            device_id=row.device_id,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )

    async def revoke_session(self, session_id: uuid.UUID, *, at: datetime, reason: str) -> None:
        await self._conn.execute(
            auth_sessions.update()
            .where(auth_sessions.c.id == session_id, auth_sessions.c.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
        )
        await self._conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.session_id == session_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    async def add(self, token: RefreshTokenRecord) -> None:
        await self._conn.execute(
            refresh_tokens.insert().values(
                token_hash=token.token_hash,
                session_id=token.session_id,
                issued_at=token.issued_at,
                expires_at=token.expires_at,
                used_at=token.used_at,
                revoked_at=token.revoked_at,
            )
        )

    async def get(self, token_hash: bytes) -> RefreshTokenRecord | None:
        row = (
            await self._conn.execute(sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash))
        ).one_or_none()
        if row is None:
            return None
        return RefreshTokenRecord(
            token_hash=row.token_hash,
            session_id=row.session_id,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
        )

    async def mark_used(self, token_hash: bytes, *, at: datetime) -> bool:
        # Conditional update: of two concurrent refreshes with one token, exactly one wins.
        result = await self._conn.execute(
            refresh_tokens.update()
            .where(
                refresh_tokens.c.token_hash == token_hash,
                refresh_tokens.c.used_at.is_(None),
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(used_at=at)
        )
        return result.rowcount == 1


class SqlLoginThrottle:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, key: str, *, for_update: bool = False) -> ThrottleState | None:
        query = sa.select(login_throttle).where(login_throttle.c.key == key)
        if for_update:
            query = query.with_for_update()  # rendered on PostgreSQL; SQLite serializes writers anyway
        row = (await self._conn.execute(query)).one_or_none()
        if row is None:
            return None
        return ThrottleState(
            failures=row.failures, window_started_at=row.window_started_at, locked_until=row.locked_until
        )

    async def lock(self, key: str, *, at: datetime) -> ThrottleState:
        insert: Any = postgresql.insert if self._conn.dialect.name == "postgresql" else sqlite.insert
        await self._conn.execute(
            insert(login_throttle)
            .values(key=key, failures=0, window_started_at=at, locked_until=None, updated_at=at)
            .on_conflict_do_nothing(index_elements=[login_throttle.c.key])
        )
        state = await self.get(key, for_update=True)
        assert state is not None  # inserted above or by a transaction that committed first
        return state

    async def save(self, key: str, state: ThrottleState, *, at: datetime) -> None:
        values = {
            "failures": state.failures,
            "window_started_at": state.window_started_at,
            "locked_until": state.locked_until,
            "updated_at": at,
        }
        insert: Any = postgresql.insert if self._conn.dialect.name == "postgresql" else sqlite.insert
        await self._conn.execute(
            insert(login_throttle)
            .values(key=key, **values)
            .on_conflict_do_update(index_elements=[login_throttle.c.key], set_=values)
        )

    async def clear(self, key: str) -> None:
        await self._conn.execute(login_throttle.delete().where(login_throttle.c.key == key))

    async def purge(self, *, older_than: datetime) -> int:
        """Delete rows untouched since `older_than` and not locked any more (housekeeping)."""
        result = await self._conn.execute(
            login_throttle.delete().where(
                login_throttle.c.updated_at < older_than,
                sa.or_(login_throttle.c.locked_until.is_(None), login_throttle.c.locked_until < older_than),
            )
        )
        return result.rowcount
