"""Identity's SQL adapters on real SQLite and PostgreSQL (tables from metadata.create_all),
then the whole identity service on them with real Argon2id (cheap parameters)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.audit.ports import AuditDetail, AuditEvent, record_one_by_one
from kora.identity import (
    AccountLocked,
    IdentityService,
    InvalidCredentials,
    InvalidToken,
    PhoneNumberTaken,
    RefreshTokenReused,
    Role,
    build_identity_adapters,
)
from kora.identity.adapters import (
    Argon2PasswordHasher,
    SqlIdentityUnitOfWork,
    SqlLoginThrottle,
    SqlRefreshTokenStore,
    SqlUserRepository,
)
from kora.identity.adapters.tables import auth_sessions, login_throttle, refresh_tokens, user_roles, users
from kora.identity.domain import AuthSession, RefreshTokenRecord, ThrottleState, UserRecord
from kora.kernel import FixedClock, new_id
from kora.platform.db import create_engine, metadata
from kora.platform.settings import Settings
from tests.unit.identity.fakes import make_settings

IDENTITY_TABLES = [users, user_roles, auth_sessions, refresh_tokens, login_throttle]
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_sqlite_url: str) -> str:
    if request.param == "sqlite":
        return tmp_sqlite_url
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=4)
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=IDENTITY_TABLES))
    yield engine
    await engine.dispose()


def a_user(*, phone_index: bytes | None = None, roles: frozenset[Role] = frozenset({Role.CUSTOMER})) -> UserRecord:
    return UserRecord(
        id=new_id(),
        phone_index=phone_index or uuid.uuid4().bytes * 2,
        phone_ciphertext=b"\x01sealed-phone",
        display_name_ciphertext=None,
        password_hash="$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA",
        roles=roles,
        created_at=T0,
    )


async def test_users_round_trip_with_roles(engine: AsyncEngine) -> None:
    admin = a_user(roles=frozenset({Role.ADMIN, Role.SUPPORT}))
    async with engine.begin() as conn:
        repo = SqlUserRepository(conn)
        await repo.add(admin)
        assert await repo.get(admin.id) == admin
        assert await repo.get_by_phone_index(admin.phone_index) == admin
        assert await repo.get(new_id()) is None
        await repo.update_password_hash(admin.id, "$argon2id$new", at=T0 + timedelta(days=1))
        stored = await repo.get(admin.id)
        assert stored is not None
        assert stored.password_hash == "$argon2id$new"
        assert stored.created_at == T0
        assert stored.created_at.tzinfo is not None


async def test_a_duplicate_phone_index_is_phone_number_taken_and_the_transaction_goes_on(
    engine: AsyncEngine,
) -> None:
    first = a_user()
    async with engine.begin() as conn:
        repo = SqlUserRepository(conn)
        await repo.add(first)
        with pytest.raises(PhoneNumberTaken):
            await repo.add(a_user(phone_index=first.phone_index))
        other = a_user()
        await repo.add(other)  # the savepoint kept the transaction usable
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one()
    assert count == 2


async def test_the_database_refuses_unknown_roles(engine: AsyncEngine) -> None:
    user = a_user()
    async with engine.begin() as conn:
        await SqlUserRepository(conn).add(user)
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(user_roles.insert().values(user_id=user.id, role="superuser", granted_at=T0))


async def test_sessions_and_refresh_tokens(engine: AsyncEngine) -> None:
    user = a_user()
    session = AuthSession(id=new_id(), user_id=user.id, device_id="device-1", created_at=T0)
    token = RefreshTokenRecord(
        token_hash=b"h" * 32, session_id=session.id, issued_at=T0, expires_at=T0 + timedelta(days=30)
    )
    async with engine.begin() as conn:
        await SqlUserRepository(conn).add(user)
        store = SqlRefreshTokenStore(conn)
        await store.open_session(session)
        await store.add(token)
        assert await store.get_session(session.id) == session
        assert await store.get(token.token_hash) == token
        assert await store.get(b"x" * 32) is None
        assert await store.mark_used(token.token_hash, at=T0 + timedelta(minutes=5))
        assert not await store.mark_used(token.token_hash, at=T0 + timedelta(minutes=6))
        used = await store.get(token.token_hash)
        assert used is not None
        assert used.used_at == T0 + timedelta(minutes=5)

        second = RefreshTokenRecord(
            token_hash=b"i" * 32, session_id=session.id, issued_at=T0, expires_at=T0 + timedelta(days=30)
        )
        await store.add(second)
        await store.revoke_session(session.id, at=T0 + timedelta(hours=1), reason="logout")
        await store.revoke_session(session.id, at=T0 + timedelta(hours=2), reason="logout")  # idempotent
        revoked = await store.get_session(session.id)
        assert revoked is not None
        assert revoked.revoked_at == T0 + timedelta(hours=1)
        second_after = await store.get(second.token_hash)
        assert second_after is not None
        assert second_after.revoked_at == T0 + timedelta(hours=1)
        assert not await store.mark_used(second.token_hash, at=T0 + timedelta(hours=3))


async def test_concurrent_rotations_of_one_token_have_one_winner(engine: AsyncEngine) -> None:
    user = a_user()
    session = AuthSession(id=new_id(), user_id=user.id, device_id="device-1", created_at=T0)
    token_hash = b"r" * 32
    async with engine.begin() as conn:
        await SqlUserRepository(conn).add(user)
        store = SqlRefreshTokenStore(conn)
        await store.open_session(session)
        await store.add(
            RefreshTokenRecord(token_hash=token_hash, session_id=session.id, issued_at=T0, expires_at=T0 + timedelta(1))
        )

    async def rotate() -> bool:
        async with engine.begin() as conn:
            won = await SqlRefreshTokenStore(conn).mark_used(token_hash, at=T0)
            await asyncio.sleep(0.05)  # hold the transaction open while the other one tries
            return won

    results = await asyncio.gather(rotate(), rotate(), rotate())
    assert sorted(results) == [False, False, True]


async def test_login_throttle_upserts_and_purges(engine: AsyncEngine) -> None:
    locked = ThrottleState(failures=0, window_started_at=T0, locked_until=T0 + timedelta(minutes=15))
    async with engine.begin() as conn:
        throttle = SqlLoginThrottle(conn)
        assert await throttle.get("account:abc") is None
        await throttle.save("account:abc", ThrottleState(failures=1, window_started_at=T0), at=T0)
        await throttle.save("account:abc", ThrottleState(failures=2, window_started_at=T0), at=T0)
        assert await throttle.get("account:abc", for_update=True) == ThrottleState(failures=2, window_started_at=T0)
        await throttle.save("ip:def", locked, at=T0)
        assert await throttle.get("ip:def") == locked
        await throttle.clear("account:abc")
        assert await throttle.get("account:abc") is None
        await throttle.save("ip:old", ThrottleState(failures=1, window_started_at=T0), at=T0 - timedelta(days=2))
        assert await throttle.purge(older_than=T0 - timedelta(days=1)) == 1
        assert await throttle.purge(older_than=T0 + timedelta(minutes=10)) == 0  # still locked
        assert await throttle.purge(older_than=T0 + timedelta(days=1)) == 1


# -- the service on SQL ------------------------------------------------------------------------


class ListAudit:
    def __init__(self, sink: list[dict[str, object]]) -> None:
        self.sink = sink

    async def record(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        correlation_id: str | None,
        outcome: str = "success",
        details: Mapping[str, AuditDetail] | None = None,
    ) -> None:
        self.sink.append({"actor": actor, "action": action, "outcome": outcome, "details": dict(details or {})})

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        await record_one_by_one(self, events)


class NewWallets:
    async def open_wallet(self, owner_id: uuid.UUID, currency: str) -> uuid.UUID:
        return new_id()


def sql_service(
    engine: AsyncEngine,
    clock: FixedClock,
    audit: list[dict[str, object]],
    *,
    settings: Settings | None = None,
    time_cost: int = 1,
) -> IdentityService:
    settings = settings or make_settings(argon2_time_cost=time_cost, argon2_memory_kib=8192)
    adapters = build_identity_adapters(settings)
    adapters["hasher"] = Argon2PasswordHasher(time_cost=time_cost, memory_cost=8192, parallelism=1)

    def audit_on(_conn: AsyncConnection) -> ListAudit:
        return ListAudit(audit)

    return IdentityService(
        uow_factory=lambda: SqlIdentityUnitOfWork(engine, wallets=lambda _conn: NewWallets(), audit=audit_on),
        clock=clock,
        settings=settings,
        **adapters,
    )


async def test_the_service_end_to_end_on_sql(engine: AsyncEngine) -> None:
    clock = FixedClock(T0)
    audit: list[dict[str, object]] = []
    service = sql_service(engine, clock, audit)
    phone, password = "+221771234567", "long-and-unusual-42"

    registered = await service.register(phone_number=phone, password=password, display_name="Awa")
    with pytest.raises(PhoneNumberTaken):
        await service.register(phone_number="+221 77 123 45 67", password=password)
    assert await service.resolve_user_by_phone(phone) == registered.user_id
    profile = await service.profile(registered.user_id)
    assert (profile.phone_number, profile.display_name) == (phone, "Awa")
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(users))).one()
    assert phone.encode() not in stored.phone_ciphertext
    assert stored.password_hash.startswith("$argon2id$")

    pair = await service.login(phone_number=phone, password=password, device_id="d1", client_ip="192.0.2.1")
    principal = await service.authenticate(pair.access_token, "d1")
    assert principal.user_id == registered.user_id
    rotated = await service.refresh(refresh_token=pair.refresh_token, device_id="d1")
    with pytest.raises(RefreshTokenReused):
        await service.refresh(refresh_token=pair.refresh_token, device_id="d1")
    with pytest.raises(InvalidToken):
        await service.authenticate(rotated.access_token, "d1")  # the reuse revoked the session

    again = await service.login(phone_number=phone, password=password, device_id="d1", client_ip="192.0.2.1")
    await service.logout(await service.authenticate(again.access_token, "d1"))
    with pytest.raises(InvalidToken):
        await service.authenticate(again.access_token, "d1")

    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await service.login(phone_number=phone, password="wrong-password", device_id="d1", client_ip="192.0.2.1")
    with pytest.raises(AccountLocked):
        await service.login(phone_number=phone, password="wrong-password", device_id="d1", client_ip="192.0.2.1")
    with pytest.raises(AccountLocked):
        await service.login(phone_number=phone, password=password, device_id="d1", client_ip="192.0.2.1")
    clock.advance(timedelta(minutes=15))
    assert await service.login(phone_number=phone, password=password, device_id="d1", client_ip="192.0.2.1")

    async with engine.connect() as conn:
        keys = (await conn.execute(sa.select(login_throttle.c.key))).scalars().all()
    assert keys
    assert all(phone[1:] not in key and "192.0.2.1" not in key for key in keys)
    assert "auth.refresh.reuse_detected" in [record["action"] for record in audit]


async def test_login_rehashes_when_argon2_parameters_change(engine: AsyncEngine) -> None:
    clock, settings = FixedClock(T0), make_settings()
    phone, password = "+221771234567", "long-and-unusual-42"
    await sql_service(engine, clock, [], settings=settings, time_cost=1).register(phone_number=phone, password=password)
    stronger = sql_service(engine, clock, [], settings=settings, time_cost=2)
    await stronger.login(phone_number=phone, password=password, device_id="d", client_ip=None)
    async with engine.connect() as conn:
        stored_hash = (await conn.execute(sa.select(users.c.password_hash))).scalar_one()
    assert stored_hash.startswith("$argon2id$v=19$m=8192,t=2,p=1$")
    await stronger.login(phone_number=phone, password=password, device_id="d", client_ip=None)
