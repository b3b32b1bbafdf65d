"""The risk and leadership roles (risk_analyst, leadership) in the core, on SQLite and
PostgreSQL: staff created with them, granted to staff only, carried in access tokens, dropped
by their revision's downgrade."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa

from kora.bootstrap import Kora
from kora.identity import Role, UserNotFound
from kora.platform.db import create_engine
from kora.platform.migrate import downgrade, upgrade
from tests.support.api import Api, new_phone
from tests.support.api import test_settings as core_settings


async def login_roles(api: Api, phone: str, password: str) -> list[str]:
    login = await api.client.post(
        "/v1/auth/login", json={"phone_number": phone, "password": password, "device_id": "staff-console"}
    )
    assert login.status_code == 200, login.text
    return sorted(jwt.decode(login.json()["access_token"], options={"verify_signature": False})["roles"])


async def test_risk_and_leadership_staff_are_created_granted_and_carried(api: Api) -> None:
    identity = api.kora.identity  # type: ignore[attr-defined]
    analyst_phone, leader_phone, password = new_phone(), new_phone(), "staff-pass-" + uuid.uuid4().hex[:8]
    await identity.create_staff(analyst_phone, password, Role.RISK_ANALYST)
    leader = await identity.create_staff(leader_phone, password, Role.LEADERSHIP)
    assert await login_roles(api, analyst_phone, password) == ["risk_analyst"]
    assert await login_roles(api, leader_phone, password) == ["leadership"]
    assert await identity.grant_role(leader, Role.RISK_ANALYST, actor="cli") is True
    assert await login_roles(api, leader_phone, password) == ["leadership", "risk_analyst"]
    customer = await api.customer()
    for role in (Role.RISK_ANALYST, Role.LEADERSHIP):
        with pytest.raises(UserNotFound):
            await identity.grant_role(uuid.UUID(customer.user_id), role, actor="cli")
    assert await identity.resolve_user_by_phone(analyst_phone) is None  # no wallet, no payee


def test_the_roles_revision_goes_down_and_up(migrated_url: str, tmp_path: Path) -> None:
    async def add_staff() -> None:
        kora = Kora(core_settings(migrated_url, tmp_path))
        try:
            for role in (Role.RISK_ANALYST, Role.LEADERSHIP):
                await kora.identity.create_staff(new_phone(), "staff-pass-" + uuid.uuid4().hex[:8], role)
        finally:
            await kora.aclose()

    async def count() -> int:
        engine = create_engine(migrated_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                query = "SELECT count(*) FROM user_roles WHERE role IN ('risk_analyst', 'leadership')"
                return int((await conn.execute(sa.text(query))).scalar_one())
        finally:
            await engine.dispose()

    asyncio.run(add_staff())
    assert asyncio.run(count()) == 2
    downgrade(migrated_url, "0010")  # below the roles revision (0011), whatever follows it
    assert asyncio.run(count()) == 0
    upgrade(migrated_url)
    asyncio.run(add_staff())
    assert asyncio.run(count()) == 2
