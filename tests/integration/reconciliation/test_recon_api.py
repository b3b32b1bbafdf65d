"""The reconciliation API end to end in-process (SQLite and PostgreSQL): uploads of simulator
reports, a match run on Kora's side fed by real `payment.status_changed` events, the summary's
numbers, lines with filters and keyset pages, the CSV export, /metrics, and no phone number in
logs or metrics."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from kora.observability import configure_tracing
from kora.observability.testing import capture_logs
from kora.reconciliation.adapters.report_queries import LINE_COLUMNS
from kora.reconciliation.adapters.tables import (
    recon_audit,
    recon_cases,
    recon_quarantine,
    recon_report_lines,
    recon_reports,
    recon_results,
)
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.http.app import create_app
from kora.reconciliation.http.routes.results import csv_cell
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.integration.reconciliation.api_support import Api, open_api
from tests.integration.reconciliation.test_match_run import feed
from tests.integration.reconciliation.test_recon_feed import Feed, lifecycle, provider_payment
from tests.unit.reconciliation.factories import DAY, Simulation

__all__ = ["feed"]

PHONE = "+2250701020304"
MALFORMED = f"THIS;IS;NOT;A;LINE;{PHONE}"
REVIEWER = "recon_reviewer"


@pytest.fixture
async def api(recon_url: str) -> AsyncIterator[Api]:
    async for opened in open_api(recon_url, max_upload_bytes=64 * 1024):
        yield opened


def _momo_report(*amounts: int) -> bytes:
    sim = Simulation()
    for amount in amounts:
        sim.mobile("momo", "collection", amount, Scenario.SUCCEED)
    return render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()


async def _upload(api: Api, data: bytes, *, provider: str = "momo", **params: str) -> dict[str, object]:
    response = await api.client.post(
        "/v1/recon/reports",
        params={"provider": provider, **params},
        content=data,
        headers={**api.as_role(REVIEWER), "Content-Type": "text/csv"},
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, object] = response.json()
    return body


async def test_upload_then_duplicate_then_multipart(api: Api) -> None:
    data = _momo_report(10_000, 2_500)
    first = await api.client.post(
        "/v1/recon/reports",
        params={"provider": "momo", "day": DAY.isoformat(), "filename": "../momo 10-03.csv"},
        content=data,
        headers={**api.as_role(REVIEWER), "Content-Type": "text/csv"},
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["provider"], body["day"], body["lines"], body["quarantined"], body["duplicate"]) == (
        "momo",
        DAY.isoformat(),
        2,
        0,
        False,
    )

    again = await api.client.post(
        "/v1/recon/reports", params={"provider": "momo"}, content=data, headers=api.as_role("recon_reviewer")
    )
    assert again.status_code == 200
    assert again.json()["report_id"] == body["report_id"]
    assert again.json()["duplicate"] is True

    other = _momo_report(3_000)
    multipart = await api.client.post(
        "/v1/recon/reports",
        params={"provider": "momo"},
        files={"file": ("momo-11.csv", other, "text/csv")},
        headers=api.as_role(REVIEWER),
    )
    assert multipart.status_code == 201, multipart.text
    assert multipart.json()["lines"] == 1

    listed = (await api.client.get("/v1/recon/reports", headers=api.as_role("recon_approver"))).json()
    assert {item["id"] for item in listed["items"]} == {body["report_id"], multipart.json()["report_id"]}
    by_id = {item["id"]: item for item in listed["items"]}
    assert by_id[body["report_id"]]["filename"] == "momo_10-03.csv"  # base name, reduced to safe characters
    assert by_id[multipart.json()["report_id"]]["filename"] == "momo-11.csv"
    assert by_id[body["report_id"]]["imported_by"].startswith("user:")
    one_day = (
        await api.client.get("/v1/recon/reports", params={"day": DAY.isoformat()}, headers=api.as_role("admin"))
    ).json()
    assert [item["id"] for item in one_day["items"]] == [body["report_id"]]
    page = (await api.client.get("/v1/recon/reports", params={"limit": 1}, headers=api.as_role("admin"))).json()
    rest = (
        await api.client.get(
            "/v1/recon/reports", params={"limit": 1, "cursor": page["next_cursor"]}, headers=api.as_role("admin")
        )
    ).json()
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == set(by_id)
    assert rest["next_cursor"] is None
    assert await api.count(recon_reports) == 2
    assert await api.count(recon_report_lines) == 3


async def test_malformed_lines_are_quarantined_and_read_back_decrypted_only_never_logged(api: Api) -> None:
    data = _momo_report(10_000) + (MALFORMED + "\r\n").encode()
    with capture_logs("DEBUG") as lines:
        uploaded = await _upload(api, data)
        detail = await api.client.get(f"/v1/recon/reports/{uploaded['report_id']}", headers=api.as_role("admin"))
    assert (uploaded["lines"], uploaded["quarantined"]) == (1, 1)
    assert detail.status_code == 200
    body = detail.json()
    assert body["quarantined_lines"] == [
        {"line_number": 3, "reason": body["quarantined_lines"][0]["reason"], "raw": MALFORMED}
    ]
    assert body["outcomes"] == {"MATCHED": 0, "MISMATCH": 0, "MISSING_INTERNAL": 0, "MISSING_PROVIDER": 0, "PENDING": 0}

    assert lines
    assert all(PHONE not in line and "2250701020304" not in line for line in lines)
    records = [json.loads(line) for line in lines]
    assert all(record["correlation_id"] for record in records)  # every line names its request
    async with api.services.engine.connect() as conn:
        audited = (
            await conn.execute(
                sa.select(recon_audit.c.action, recon_audit.c.case_id, recon_audit.c.role, recon_audit.c.details)
            )
        ).all()
    assert [(a.action, a.case_id, a.role) for a in audited] == [
        ("report.import", uploaded["report_id"], "recon_reviewer"),
        ("report.read", uploaded["report_id"], "admin"),
    ]  # in the tamper-evident chain, never with line content
    assert all(MALFORMED not in a.details and PHONE not in a.details for a in audited)
    assert (await api.services.review.audit.verify(api.services.engine)).ok
    metrics = await api.metrics()
    assert "2250701020304" not in metrics
    reason = body["quarantined_lines"][0]["reason"]
    assert f'kora_recon_quarantined_lines_total{{provider="momo",reason="{reason}"}} 1.0' in metrics


async def test_bad_uploads_are_problems_and_store_nothing(api: Api) -> None:
    reviewer = api.as_role(REVIEWER)
    cases = {
        "unknown provider": ({"provider": "mpesa"}, _momo_report(1_000), 422, "unknown_provider"),
        "phone as provider": ({"provider": PHONE}, _momo_report(1_000), 422, "unknown_provider"),
        "not the dialect": ({"provider": "wave"}, _momo_report(1_000), 422, "report_malformed"),
        "too large": ({"provider": "momo"}, b"x" * (64 * 1024 + 1), 413, "payload_too_large"),
        "empty": ({"provider": "momo"}, b"", 422, "report_missing"),
        "bad day": ({"provider": "momo", "day": "10/03/2026"}, _momo_report(1_000), 422, "validation_error"),
    }
    with capture_logs("DEBUG") as lines:
        for name, (params, data, status, code) in cases.items():
            response = await api.client.post("/v1/recon/reports", params=params, content=data, headers=reviewer)
            assert (response.status_code, response.json()["code"]) == (status, code), name
            assert response.headers["content-type"] == "application/problem+json"
            assert PHONE not in response.text
    assert len(lines) >= len(cases)  # an access line each, at least
    assert all("2250701020304" not in line for line in lines)
    for table in (recon_reports, recon_report_lines, recon_quarantine):
        assert await api.count(table) == 0
    metrics = await api.metrics()
    assert 'kora_recon_report_imports_total{provider="wave",result="rejected"} 1.0' in metrics
    assert 'kora_recon_report_imports_total{provider="unknown",result="rejected"} 2.0' in metrics
    assert 'kora_recon_report_imports_total{provider="momo",result="rejected"} 2.0' in metrics
    assert "2250701020304" not in metrics
    assert "mpesa" not in metrics


async def test_unknown_report_and_bad_cursor_are_problems(api: Api) -> None:
    admin = api.as_role("admin")
    missing = await api.client.get(f"/v1/recon/reports/{uuid.uuid4()}", headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "report_not_found")
    match = await api.client.post(f"/v1/recon/reports/{uuid.uuid4()}/match", headers=api.as_role("recon_reviewer"))
    assert (match.status_code, match.json()["code"]) == (404, "report_not_found")
    cursor = await api.client.get("/v1/recon/lines", params={"cursor": "bm9wZQ"}, headers=admin)
    assert (cursor.status_code, cursor.json()["code"]) == (400, "invalid_cursor")
    outcome = await api.client.get("/v1/recon/lines", params={"outcome": "WHATEVER"}, headers=admin)
    assert (outcome.status_code, outcome.json()["code"]) == (422, "validation_error")


async def test_openapi_health_and_readiness(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    for path in ("/v1/recon/reports", "/v1/recon/summary", "/v1/recon/lines", "/v1/recon/lines.csv"):
        assert path in schema["paths"]
    assert "Problem" in schema["components"]["schemas"]
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ready"}


@pytest.fixture
async def matched(feed: Feed, recon_url: str) -> AsyncIterator[tuple[Api, str]]:
    """A MoMo report of three lines matched against Kora's side: one MATCHED (10 000), one
    MISMATCH on the amount (the provider says 4 000, Kora 4 500), one MISSING_INTERNAL (2 500);
    plus a Kora payment of 7 000 the report does not list, due before the run: MISSING_PROVIDER."""
    sim = Simulation()
    ok_op = sim.mobile("momo", "collection", 10_000, Scenario.SUCCEED)
    short_op = sim.mobile("momo", "collection", 4_000, Scenario.SUCCEED)
    sim.mobile("momo", "disbursement", 2_500, Scenario.SUCCEED)
    report = render_report(ApiStyle.MOMO, sim.state.ledger.of_provider("momo"), DAY).encode()
    ok = provider_payment(provider="momo", amount=10_000, payment_id=uuid.UUID(ok_op.external_id))
    short = provider_payment(provider="momo", amount=4_500, payment_id=uuid.UUID(short_op.external_id))
    unlisted = provider_payment(provider="momo", amount=7_000)
    envelopes = [
        *lifecycle(feed, ok, provider_ref=ok_op.id),
        *lifecycle(feed, short, provider_ref=short_op.id),
        *lifecycle(feed, unlisted, provider_ref="M-UNLISTED"),
    ]
    await feed.publish(*envelopes)
    assert await feed.drain() == ["applied"] * len(envelopes)
    configure_tracing(service_name="kora-recon-test", exporter="none")  # spans exist: exemplars
    async for api in open_api(recon_url):
        api.services.rules = MatchRules(fallback_window=None)
        uploaded = await _upload(api, report, day=DAY.isoformat())
        report_id = str(uploaded["report_id"])
        run = await api.client.post(f"/v1/recon/reports/{report_id}/match", headers=api.as_role(REVIEWER))
        assert run.status_code == 200, run.text
        assert run.json()["counts"] == {
            "MATCHED": 1,
            "MISMATCH": 1,
            "MISSING_INTERNAL": 1,
            "MISSING_PROVIDER": 1,
            "PENDING": 0,
        }
        yield api, report_id


async def test_summary_numbers_are_exact(matched: tuple[Api, str]) -> None:
    api, report_id = matched
    response = await api.client.get(
        "/v1/recon/summary", params={"provider": "momo", "day": DAY.isoformat()}, headers=api.as_role("recon_approver")
    )
    assert response.status_code == 200
    (summary,) = response.json()["summaries"]
    assert (summary["provider"], summary["day"], summary["reports"], summary["results"]) == ("momo", "2026-03-10", 1, 4)
    assert summary["outcomes"] == {
        "MATCHED": {"count": 1, "amounts": {"XOF": 10_000}},
        "MISMATCH": {"count": 1, "amounts": {"XOF": 4_000}},  # the provider's line
        "MISSING_INTERNAL": {"count": 1, "amounts": {"XOF": 2_500}},
        "MISSING_PROVIDER": {"count": 1, "amounts": {"XOF": 7_000}},  # Kora's payment
        "PENDING": {"count": 0, "amounts": {}},
    }
    assert summary["mismatch_rate"] == 0.75  # 3 discrepancies of 4 decided results
    assert summary["amount_at_risk"] == {"XOF": 13_500}  # 4 000 + 2 500 + 7 000
    oldest = summary["oldest_open"]
    lines = (
        await api.client.get("/v1/recon/lines", params={"report_id": report_id}, headers=api.as_role("admin"))
    ).json()
    first_open = min(
        (i for i in lines["items"] if i["outcome"] != "MATCHED" and i["line_number"] is not None),
        key=lambda i: i["line_number"],
    )
    assert (oldest["report_id"], oldest["result_id"], oldest["kind"]) == (report_id, first_open["id"], "result")
    # The API's match run opened a review case per discrepancy; the oldest unfinished one is named.
    async with api.services.engine.connect() as conn:
        cases = (
            await conn.execute(
                sa.select(recon_cases.c.id, recon_cases.c.status, recon_cases.c.outcome).order_by(
                    recon_cases.c.opened_at, recon_cases.c.id
                )
            )
        ).all()
    assert sorted(c.outcome for c in cases) == ["MISMATCH", "MISSING_INTERNAL", "MISSING_PROVIDER"]
    async with api.services.engine.connect() as conn:
        (run,) = (await conn.execute(sa.select(recon_audit).where(recon_audit.c.action == "report.match"))).mappings()
    assert (run["case_id"], run["role"]) == (report_id, "recon_reviewer")  # audited in the run's transaction
    assert json.loads(run["details"])["mismatch"] == 1
    oldest_case = summary["oldest_open_case"]
    assert (oldest_case["case_id"], oldest_case["status"]) == (str(cases[0].id), cases[0].status)
    other_day = await api.client.get("/v1/recon/summary", params={"day": "2026-03-11"}, headers=api.as_role("admin"))
    assert other_day.json() == {"summaries": []}

    metrics = await api.metrics()
    assert 'kora_recon_mismatch_rate{provider="momo"} 0.75' in metrics
    assert 'kora_recon_amount_at_risk_minor{currency="XOF",provider="momo"} 13500.0' in metrics
    assert 'kora_recon_lines_total{outcome="MISMATCH",provider="momo",reason="amount"} 1.0' in metrics
    assert 'kora_recon_lines_total{outcome="MATCHED",provider="momo",reason=""} 1.0' in metrics
    assert 'kora_recon_match_duration_seconds_count{provider="momo"} 1.0' in metrics
    assert 'kora_recon_import_duration_seconds_count{provider="momo"} 1.0' in metrics
    assert 'kora_http_requests_total{method="GET",route="/v1/recon/summary",status="200"}' in metrics
    openmetrics = (
        await api.client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    ).text
    duration_buckets = [
        line for line in openmetrics.splitlines() if line.startswith("kora_recon_match_duration_seconds_bucket")
    ]
    assert any('# {trace_id="' in line for line in duration_buckets)  # the run's trace, as exemplar


async def test_lines_filters_and_keyset_pages(matched: tuple[Api, str]) -> None:
    api, report_id = matched
    admin = api.as_role("admin")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1, "provider": "momo"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/recon/lines", params=params, headers=admin)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4
    assert seen == sorted(seen)
    assert len(set(seen)) == 4

    mismatch = (await api.client.get("/v1/recon/lines", params={"outcome": "MISMATCH"}, headers=admin)).json()
    (item,) = mismatch["items"]
    assert (item["reason"], item["amount"], item["currency"], item["report_id"]) == ("amount", 4_000, "XOF", report_id)
    assert item["provider_txn_id"]
    assert item["line_status"]
    assert item["line_number"] is not None
    by_reason = (await api.client.get("/v1/recon/lines", params={"reason": "amount"}, headers=admin)).json()
    assert [i["id"] for i in by_reason["items"]] == [item["id"]]
    missing = (await api.client.get("/v1/recon/lines", params={"outcome": "MISSING_PROVIDER"}, headers=admin)).json()
    (unlisted,) = missing["items"]
    assert (unlisted["line_number"], unlisted["amount"], unlisted["provider_txn_id"]) == (None, 7_000, None)
    by_payment = (
        await api.client.get("/v1/recon/lines", params={"payment_id": unlisted["payment_id"]}, headers=admin)
    ).json()
    assert [i["id"] for i in by_payment["items"]] == [unlisted["id"]]  # on-call: from a payment to its result
    assert (await api.client.get("/v1/recon/lines", params={"provider": "wave"}, headers=admin)).json()["items"] == []


async def test_csv_export_has_the_same_rows(matched: tuple[Api, str]) -> None:
    api, report_id = matched
    admin = api.as_role("recon_reviewer")
    response = await api.client.get("/v1/recon/lines.csv", params={"report_id": report_id}, headers=admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == LINE_COLUMNS
    listed = (await api.client.get("/v1/recon/lines", params={"report_id": report_id}, headers=admin)).json()["items"]
    assert [int(r[0]) for r in rows[1:]] == [i["id"] for i in listed]
    for row, item in zip(rows[1:], listed, strict=True):
        as_dict = dict(zip(LINE_COLUMNS, row, strict=True))
        assert as_dict["outcome"] == item["outcome"]
        assert as_dict["amount"] == str(item["amount"])
        assert as_dict["reason"] == (item["reason"] or "")
    only_matched = await api.client.get("/v1/recon/lines.csv", params={"outcome": "MATCHED"}, headers=admin)
    assert len(list(csv.reader(io.StringIO(only_matched.text)))) == 2  # header + one row


def test_csv_cells_cannot_be_formulas() -> None:
    assert csv_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    for start in ("+", "-", "@", "\t", "\r"):
        assert csv_cell(start + "1").startswith("'")
    assert csv_cell("T-123") == "T-123"
    assert csv_cell(4_000) == "4000"
    assert csv_cell(None) == ""


async def test_results_of_the_run_are_in_the_database(matched: tuple[Api, str]) -> None:
    api, _ = matched
    assert await api.count(recon_results) == 4


async def test_a_restarted_process_reports_the_risk_gauges_at_once(matched: tuple[Api, str], recon_url: str) -> None:
    """A new process (its own registry) loads the gauges from the stored results at start."""
    async for fresh in open_api(recon_url):
        app = create_app(fresh.services, manage_lifecycle=False)
        async with LifespanManager(app):
            metrics = await fresh.metrics()
        assert 'kora_recon_amount_at_risk_minor{currency="XOF",provider="momo"} 13500.0' in metrics
        assert 'kora_recon_mismatch_rate{provider="momo"} 0.75' in metrics
