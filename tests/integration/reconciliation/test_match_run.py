"""A match run on the reconciliation database (SQLite and PostgreSQL): Kora's side fed by the
`recon` consumer from real producer events, a simulator-rendered MoMo report imported, the
results stored per line (and per unlisted payment), a second run replacing the first."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import date, timedelta
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from kora.kernel import FixedClock
from kora.payments.domain.model import PaymentType
from kora.reconciliation.adapters.crypto import AesGcmReportCipher
from kora.reconciliation.adapters.sql import SqlReportStore
from kora.reconciliation.adapters.tables import recon_results
from kora.reconciliation.adapters.view_store import upsert_payment
from kora.reconciliation.cli import register
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.schedules import load_rules
from kora.reconciliation.service.importing import ReportImports, ReportNotFound
from kora.reconciliation.service.match_run import run_match
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.integration.reconciliation.test_recon_feed import Feed, feed, lifecycle, provider_payment
from tests.unit.reconciliation.factories import AS_OF, DAY, START, Simulation, kora_view

__all__ = ["feed"]  # the fixture, shared with the feed tests

RUN_AT = START + timedelta(days=3, hours=1)


async def _import(feed: Feed, data: bytes, day: date | None = None) -> uuid.UUID:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    imports = ReportImports(SqlReportStore(feed.engine), AesGcmReportCipher.from_setting(key), FixedClock(START))
    result = await imports.import_report("momo", data, filename="momo.csv", actor="ops-1", report_day=day)
    assert result.quarantined == 0
    return result.report_id


async def test_matched_mismatched_and_missing_internal_are_stored_and_a_rerun_replaces_them(feed: Feed) -> None:
    sim = Simulation()
    matched_op = sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    short_op = sim.mobile("momo", "collection", 4_000, Scenario.SUCCEED)
    unknown_op = sim.mobile("momo", "disbursement", 2_500, Scenario.SUCCEED)
    report = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()

    # Kora's side: the first as the provider has it, the second for 4_500 (Kora and the provider
    # disagree), nothing for the third; a Wave payment that must stay out of a MoMo run.
    matched = provider_payment(provider="momo", amount=10_000, payment_id=uuid.UUID(matched_op.external_id))
    short = provider_payment(provider="momo", amount=4_500, payment_id=uuid.UUID(short_op.external_id))
    other = provider_payment(provider="wave", amount=2_500, kind=PaymentType.CASH_OUT)
    envelopes = [
        *lifecycle(feed, matched, provider_ref=matched_op.id),
        *lifecycle(feed, short, provider_ref=short_op.id),
        *lifecycle(feed, other, provider_ref="T_WAVE_9"),
    ]
    await feed.publish(*envelopes)
    assert await feed.drain() == ["applied"] * len(envelopes)

    report_id = await _import(feed, report)
    rules = MatchRules(fallback_window=None)
    counts = await run_match(feed.engine, report_id, rules=rules, as_of=AS_OF, clock=FixedClock(RUN_AT))
    assert counts == {"MATCHED": 1, "MISMATCH": 1, "MISSING_INTERNAL": 1, "MISSING_PROVIDER": 0, "PENDING": 0}

    async with feed.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(sa.select(recon_results).order_by(recon_results.c.id))]
    by_payment = {r["payment_id"]: r for r in rows}
    assert {r["report_id"] for r in rows} == {report_id}
    assert all(r["line_number"] is not None and r["created_at"] == RUN_AT for r in rows)
    ok = by_payment[str(matched.id)]
    assert (ok["outcome"], ok["reason"], ok["auto_resolution"]) == ("MATCHED", None, "settle")
    assert (ok["amount"], ok["currency"]) == (10_000, "XOF")  # the provider's line
    bad = by_payment[str(short.id)]
    assert (bad["outcome"], bad["reason"], bad["auto_resolution"]) == ("MISMATCH", "amount", "review")
    missing = by_payment[None]
    assert (missing["outcome"], missing["auto_resolution"]) == ("MISSING_INTERNAL", "query_status")
    assert unknown_op.id not in str(rows)  # lines are named by number, not by content

    # Same report again: its results are replaced, not added to.
    again = await run_match(feed.engine, report_id, rules=rules, as_of=AS_OF, clock=FixedClock(RUN_AT))
    assert again == counts
    async with feed.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(recon_results))).scalar_one()
    assert total == len(rows) == 3


async def test_a_payment_the_report_does_not_list_is_missing_once_due(feed: Feed) -> None:
    sim = Simulation()
    sim.mobile("momo", "collection", 3_000, Scenario.SUCCEED)
    report_id = await _import(feed, render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode())
    unlisted = provider_payment(provider="momo", amount=7_000)
    await feed.publish(*lifecycle(feed, unlisted, provider_ref="M-UNLISTED"))
    await feed.drain()

    rules = MatchRules(fallback_window=None)
    early = await run_match(feed.engine, report_id, rules=rules, as_of=START + timedelta(hours=2))
    assert (early["MISSING_INTERNAL"], early["PENDING"], early["MISSING_PROVIDER"]) == (1, 1, 0)
    late = await run_match(feed.engine, report_id, rules=rules, as_of=AS_OF)
    assert (late["MISSING_INTERNAL"], late["PENDING"], late["MISSING_PROVIDER"]) == (1, 0, 1)
    async with feed.engine.connect() as conn:
        rows = (await conn.execute(sa.select(recon_results.c.outcome, recon_results.c.payment_id))).all()
        unlisted_amount = (
            await conn.execute(
                sa.select(recon_results.c.amount, recon_results.c.currency).where(
                    recon_results.c.outcome == "MISSING_PROVIDER"
                )
            )
        ).one()
    assert sorted(rows, key=str) == sorted(
        [("MISSING_INTERNAL", None), ("MISSING_PROVIDER", str(unlisted.id))], key=str
    )
    assert tuple(unlisted_amount) == (7_000, "XOF")  # Kora's payment: the report has no line for it


async def test_an_unknown_report_is_refused(feed: Feed) -> None:
    with pytest.raises(ReportNotFound):
        await run_match(feed.engine, uuid.uuid4(), rules=MatchRules(), as_of=AS_OF)


def test_cli_matches_a_stored_report_and_prints_the_counts(tmp_path: Path) -> None:
    main = click.Group("kora")
    register(main)
    sim = Simulation()
    sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    report = tmp_path / "momo.csv"
    report.write_text(render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY))
    env = {
        "KORA_RECON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'recon.db'}",
        "KORA_RECON_REPORT_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "KORA_DEV_SECRETS_FILE": str(tmp_path / "dev-secrets.json"),  # the outcome events' dev key
        "KORA_LOG_LEVEL": "WARNING",
    }
    runner = CliRunner()
    assert runner.invoke(main, ["recon", "db", "upgrade"], env=env).exit_code == 0
    imported = runner.invoke(main, ["recon", "import", "--provider", "momo", "--actor", "ops-1", str(report)], env=env)
    report_id = json.loads(imported.stdout)["report_id"]

    matched = runner.invoke(main, ["recon", "match", "--report-id", report_id], env=env)
    assert matched.exit_code == 0, matched.output
    out = json.loads(matched.stdout)
    assert out["report_id"] == report_id
    assert out["counts"] == {"MATCHED": 0, "MISMATCH": 0, "MISSING_INTERNAL": 1, "MISSING_PROVIDER": 0, "PENDING": 0}
    unknown = runner.invoke(main, ["recon", "match", "--report-id", str(uuid.uuid4())], env=env)
    assert unknown.exit_code != 0
    assert "no stored report" in unknown.output


async def test_each_report_expects_only_its_own_days_payments(feed: Feed) -> None:
    """Day 2's report does not list day 1's payment (day 1's report did): it is not
    MISSING_PROVIDER there, however late the run; each report expects its own day's captures."""
    sim = Simulation()
    first = sim.mobile("momo", "collection", 3_000, Scenario.SUCCEED)
    sim.clock.advance(timedelta(days=1))
    second = sim.mobile("momo", "collection", 4_000, Scenario.SUCCEED)
    ledger = sim.state.ledger.of_provider("momo")
    async with feed.engine.begin() as conn:
        for op in (first, second):
            await upsert_payment(conn, kora_view(op, "CAPTURED"), sequence=3, at=START)
    day_one = await _import(feed, render_report(ApiStyle.MOMO, ledger, DAY).encode())
    day_two = await _import(feed, render_report(ApiStyle.MOMO, ledger, DAY + timedelta(days=1)).encode())

    rules = MatchRules(fallback_window=None)
    late = AS_OF + timedelta(days=5)  # both payments long past their settlement date and grace
    only_matched = {"MATCHED": 1, "MISMATCH": 0, "MISSING_INTERNAL": 0, "MISSING_PROVIDER": 0, "PENDING": 0}
    assert await run_match(feed.engine, day_one, rules=rules, as_of=late) == only_matched
    assert await run_match(feed.engine, day_two, rules=rules, as_of=late) == only_matched
    assert await run_match(feed.engine, day_one, rules=rules, as_of=late) == only_matched  # a re-run too


async def test_a_payment_captured_before_midnight_and_reported_the_next_day_is_flagged_nowhere(feed: Feed) -> None:
    """Captured at 23:58 by Kora's clock, reported on the provider's next day (its cut-off): it
    falls in both days' windows, is matched on day 2, and day 1's re-run stops expecting it."""
    sim = Simulation()
    sim.clock.advance(timedelta(hours=14, minutes=58))  # 23:58 UTC on DAY
    op = sim.mobile("momo", "collection", 5_000, Scenario.SUCCEED)
    ledger = sim.state.ledger.of_provider("momo")
    view = kora_view(op, "CAPTURED")
    async with feed.engine.begin() as conn:
        await upsert_payment(conn, view, sequence=3, at=START)
    # Day 1's report is empty of it (the provider booked it after its cut-off), day 2's lists it.
    next_day = DAY + timedelta(days=1)
    listed = render_report(ApiStyle.MOMO, ledger, DAY).encode()
    empty = listed.split(b"\n", 1)[0] + b"\n"  # the header only
    day_one = await _import(feed, empty, DAY)
    day_two = await _import(feed, listed, next_day)

    rules = MatchRules(fallback_window=None)
    early = START + timedelta(hours=16)  # not due yet: PENDING in day 1's run
    assert (await run_match(feed.engine, day_one, rules=rules, as_of=early))["PENDING"] == 1
    assert (await run_match(feed.engine, day_two, rules=rules, as_of=early))["MATCHED"] == 1
    late = AS_OF + timedelta(days=5)
    again = await run_match(feed.engine, day_one, rules=rules, as_of=late)
    assert (again["MISSING_PROVIDER"], again["PENDING"]) == (0, 0)


async def test_a_run_checks_fees_against_the_providers_schedule_file(feed: Feed) -> None:
    """The provider's shipped rules (kora/reconciliation/schedules/momo.json: 1 % on collections)
    are what a run with `load_rules` checks fees against: a line charging 1.5 % is a fee MISMATCH;
    the same report with no schedule matches."""
    sim = Simulation()
    fair = sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    overcharged = sim.mobile("momo", "collection", 20_000, Scenario.SUCCEED)
    text = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY)
    assert ";20000.00;XOF;200.00;19800.00" in text
    report = text.replace(";20000.00;XOF;200.00;19800.00", ";20000.00;XOF;300.00;19700.00").encode()
    async with feed.engine.begin() as conn:
        for op in (fair, overcharged):
            await upsert_payment(conn, kora_view(op, "CAPTURED"), sequence=3, at=START)
    report_id = await _import(feed, report, DAY)

    unchecked = await run_match(feed.engine, report_id, rules=MatchRules(), as_of=AS_OF)
    assert (unchecked["MATCHED"], unchecked["MISMATCH"]) == (2, 0)
    checked = await run_match(feed.engine, report_id, rules=load_rules, as_of=AS_OF)
    assert (checked["MATCHED"], checked["MISMATCH"]) == (1, 1)
    async with feed.engine.connect() as conn:
        reason = (
            await conn.execute(sa.select(recon_results.c.reason).where(recon_results.c.outcome == "MISMATCH"))
        ).scalar_one()
    assert reason == "fee"
