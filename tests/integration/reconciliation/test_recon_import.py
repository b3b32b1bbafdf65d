"""Importing a simulator-rendered settlement report into the reconciliation database: lines
and quarantine stored in one go, re-import a no-op, content encrypted at rest, reading it back
only with a reconciliation role."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.kernel import FixedClock
from kora.platform.db import create_engine
from kora.reconciliation.adapters.crypto import AesGcmReportCipher, DecryptionFailed
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import recon_quarantine, recon_report_lines, recon_reports
from kora.reconciliation.service.importing import Forbidden, ReportImports
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.records import Operation
from kora.simulator.reports import render_report
from tests.unit.reconciliation.factories import DAY, START, Simulation

MALFORMED = "THIS;IS;NOT;A;LINE;+2250700000000"


@dataclass
class Recon:
    engine: AsyncEngine
    imports: ReportImports
    cipher: AesGcmReportCipher


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
async def recon(recon_url: str) -> AsyncIterator[Recon]:
    engine = create_engine(recon_url, pool_size=2)
    cipher = AesGcmReportCipher.from_setting(_key())
    try:
        yield Recon(engine, ReportImports(SqlReportStore(engine), cipher, FixedClock(START)), cipher)
    finally:
        await engine.dispose()


def _momo_report() -> tuple[bytes, list[Operation]]:
    sim = Simulation()
    operations = [
        sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED),
        sim.mobile("momo", "disbursement", 2_500, Scenario.SUCCEED),
        sim.mobile("momo", "collection", 7_000, Scenario.DECLINE),
    ]
    text = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY)
    return (text + MALFORMED + "\r\n").encode(), operations


async def _count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_import_stores_lines_and_quarantine_and_reimport_changes_nothing(recon: Recon) -> None:
    data, operations = _momo_report()
    result = await recon.imports.import_report("momo", data, filename="momo-2026-03-10.csv", actor="ops-1")
    assert not result.duplicate
    assert result.lines >= len(operations)
    assert result.quarantined == 1
    assert await _count(recon.engine, recon_report_lines) == result.lines
    assert await _count(recon.engine, recon_quarantine) == 1
    async with recon.engine.connect() as conn:
        ids = set((await conn.execute(sa.select(recon_report_lines.c.provider_txn_id))).scalars())
        row = (await conn.execute(sa.select(recon_reports))).mappings().one()
    assert {op.id for op in operations} <= ids
    assert (row["line_count"], row["quarantined_count"], row["size"]) == (result.lines, 1, len(data))
    assert row["imported_by"] == "ops-1"

    again = await recon.imports.import_report("momo", data, filename="renamed.csv", actor="ops-2")
    assert again.duplicate
    assert (again.report_id, again.lines, again.quarantined) == (result.report_id, result.lines, 1)
    assert await _count(recon.engine, recon_reports) == 1
    assert await _count(recon.engine, recon_report_lines) == result.lines


async def test_content_is_encrypted_at_rest_and_decrypts_byte_for_byte(recon: Recon) -> None:
    data, operations = _momo_report()
    result = await recon.imports.import_report("momo", data, filename="momo.csv", actor="ops-1")
    async with recon.engine.connect() as conn:
        content = (await conn.execute(sa.select(recon_reports.c.content))).scalar_one()
        raw = (await conn.execute(sa.select(recon_quarantine.c.raw))).scalar_one()
    assert operations[0].id.encode() not in content
    assert b"+225" not in raw
    assert MALFORMED.encode() not in raw

    report = await recon.imports.read_report(result.report_id, roles={"recon_reviewer"})
    assert report.data == data
    assert [(q.reason, q.raw) for q in report.quarantined] == [("wrong_column_count", MALFORMED)]


async def test_a_ciphertext_moved_to_another_report_does_not_decrypt(recon: Recon) -> None:
    first = await recon.imports.import_report("momo", _momo_report()[0], filename="a.csv", actor="ops")
    second = await recon.imports.import_report("momo", _momo_report()[0], filename="b.csv", actor="ops")
    assert first.report_id != second.report_id
    async with recon.engine.begin() as conn:
        stolen = (
            await conn.execute(sa.select(recon_reports.c.content).where(recon_reports.c.id == first.report_id))
        ).scalar_one()
        await conn.execute(
            sa.update(recon_reports).where(recon_reports.c.id == second.report_id).values(content=stolen)
        )
    with pytest.raises(DecryptionFailed):
        await recon.imports.read_report(second.report_id, roles={"admin"})


@pytest.mark.parametrize("roles", [set(), {"customer"}, {"merchant", "support"}])
async def test_reading_a_report_needs_a_reconciliation_role(recon: Recon, roles: set[str]) -> None:
    result = await recon.imports.import_report("momo", _momo_report()[0], filename="m.csv", actor="ops")
    with pytest.raises(Forbidden):
        await recon.imports.read_report(result.report_id, roles=roles)
    for allowed in ("recon_reviewer", "recon_approver", "admin"):
        assert (await recon.imports.read_report(result.report_id, roles={allowed})).report_id == result.report_id
