"""The reconciliation roles (recon_reviewer, recon_approver) in the core, on SQLite and
PostgreSQL: staff created with them by the CLI's use case, granted to staff only, stored (the
database's role check knows them), carried in access tokens; `kora admin` commands."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from kora.bootstrap import Kora
from kora.cli import main as kora_cli
from kora.identity import Role, UserNotFound
from kora.platform.db import create_engine
from kora.platform.migrate import downgrade, upgrade
from tests.support.api import Api, new_phone
from tests.support.api import test_settings as core_settings


async def login_roles(api: Api, phone: str, password: str) -> list[str]:
    login = await api.client.post(
        "/v1/auth/login", json={"phone_number": phone, "password": password, "device_id": "recon-console"}
    )
    assert login.status_code == 200, login.text
    claims = jwt.decode(login.json()["access_token"], options={"verify_signature": False})
    return list(claims["roles"])


async def test_recon_staff_are_created_granted_and_carried_in_tokens(api: Api) -> None:
    identity = api.kora.identity  # type: ignore[attr-defined]
    reviewer_phone, approver_phone, password = new_phone(), new_phone(), "recon-pass-" + uuid.uuid4().hex[:8]
    await identity.create_staff(reviewer_phone, password, Role.RECON_REVIEWER)
    approver = await identity.create_staff(approver_phone, password, Role.RECON_APPROVER)
    assert await login_roles(api, reviewer_phone, password) == ["recon_reviewer"]
    assert await login_roles(api, approver_phone, password) == ["recon_approver"]

    # A staff member may be given the other reconciliation role; a customer may not.
    assert await identity.grant_role(approver, Role.RECON_REVIEWER, actor="cli") is True
    assert await identity.grant_role(approver, Role.RECON_REVIEWER, actor="cli") is False
    assert sorted(await login_roles(api, approver_phone, password)) == ["recon_approver", "recon_reviewer"]
    alice = await api.customer()
    with pytest.raises(UserNotFound):
        await identity.grant_role(uuid.UUID(alice.user_id), Role.RECON_APPROVER, actor="cli")
    with pytest.raises(ValueError, match="staff roles"):
        await identity.create_staff(new_phone(), password, Role.MERCHANT)
    # Recon staff hold no wallet and are no payee.
    assert await identity.resolve_user_by_phone(reviewer_phone) is None
    assert await identity.resolve_staff_by_phone(reviewer_phone) is not None


def test_cli_creates_recon_staff_and_grants_recon_roles(migrated_sqlite_url: str, tmp_path: Path) -> None:
    env = {
        "KORA_DATABASE_URL": migrated_sqlite_url,
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev.json"),
        "KORA_ARGON2_TIME_COST": "1",
        "KORA_ARGON2_MEMORY_KIB": "8192",
        "KORA_EVENTS_IN_PROCESS": "false",
    }
    runner = CliRunner()
    phone, password = new_phone(), "recon-pass-" + uuid.uuid4().hex[:8]
    created = runner.invoke(
        kora_cli,
        ["admin", "create-staff", "--phone-number", phone, "--role", "recon_reviewer", "--password", password],
        env=env,
    )
    assert created.exit_code == 0, created.output
    assert "recon_reviewer created: user_id=" in created.output
    granted = runner.invoke(kora_cli, ["admin", "grant-role", "--phone-number", phone, "recon_approver"], env=env)
    assert granted.exit_code == 0, granted.output
    assert "recon_approver role granted" in granted.output
    customer = new_phone()
    nobody = runner.invoke(kora_cli, ["admin", "grant-role", "--phone-number", customer, "recon_approver"], env=env)
    assert nobody.exit_code == 1
    assert "no staff member" in nobody.output
    wrong = runner.invoke(kora_cli, ["admin", "grant-role", "--phone-number", phone, "support"], env=env)
    assert wrong.exit_code == 2  # not a grantable role


def test_the_roles_revision_goes_down_and_up_with_recon_staff(migrated_url: str, tmp_path: Path) -> None:
    """Down, the reconciliation roles are dropped (the staff keep their accounts); up again, they
    can be granted again."""

    async def staff_with_recon_role() -> None:
        kora = Kora(core_settings(migrated_url, tmp_path))
        try:
            await kora.identity.create_staff(new_phone(), "recon-pass-" + uuid.uuid4().hex[:8], Role.RECON_APPROVER)
        finally:
            await kora.aclose()

    async def recon_roles() -> int:
        engine = create_engine(migrated_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                query = "SELECT count(*) FROM user_roles WHERE role IN ('recon_reviewer', 'recon_approver')"
                return int((await conn.execute(sa.text(query))).scalar_one())
        finally:
            await engine.dispose()

    asyncio.run(staff_with_recon_role())
    assert asyncio.run(recon_roles()) == 1
    downgrade(migrated_url, "0008")  # below the roles revision (0009), whatever follows it
    assert asyncio.run(recon_roles()) == 0
    upgrade(migrated_url)
    asyncio.run(staff_with_recon_role())
    assert asyncio.run(recon_roles()) == 1
