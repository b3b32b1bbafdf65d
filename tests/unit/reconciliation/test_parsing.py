"""Parsing the simulator's three report dialects, exactly, and quarantining every bad line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

import pytest

from kora.reconciliation import (
    Direction,
    LineStatus,
    LineType,
    QuarantineReason,
    ReportError,
    dialect_from_mapping,
    load_dialect,
    parse_report,
    report_digest,
)
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.reports import render_report
from tests.unit.reconciliation.factories import DAY, Simulation

MOMO_HEADER = "Id;External Id;Date;Status;Type;Amount;Currency;Fee;Net"
WAVE_HEADER = "transaction_id,client_reference,timestamp,status,type,amount,fee,net_amount,currency"
CARD_HEADER = "RECORD_TYPE|ACQUIRER_REF|MERCHANT_REF|AUTH_ID|TXN_DATE|TXN_TIME|CURRENCY|GROSS|FEE|NET"


def test_momo_report_from_the_simulator() -> None:
    sim = Simulation()
    cash_in = sim.mobile("momo", "collection", 1_050, Scenario.SUCCEED, currency="GHS")
    cash_out = sim.mobile("momo", "disbursement", 1_500, Scenario.SUCCEED)
    failed = sim.mobile("momo", "collection", 700, Scenario.DECLINE)
    reversed_op = sim.mobile("momo", "collection", 2_000, Scenario.REVERSAL)
    data = render_report(ApiStyle.MOMO, [cash_in, cash_out, failed, reversed_op], DAY).encode()
    report = parse_report(load_dialect("momo"), data)
    assert report.quarantined == []
    first, second, third, original, reversal = report.lines
    assert (first.amount, first.fee, first.net, first.currency, first.direction) == (
        1_050,
        11,
        1_039,
        "GHS",
        Direction.IN,
    )
    assert (first.provider_txn_id, first.our_reference, first.type, first.status) == (
        cash_in.id,
        cash_in.external_id,
        LineType.CASH_IN,
        LineStatus.SUCCEEDED,
    )
    assert (second.amount, second.fee, second.net, second.direction, second.type) == (
        1_500,
        25,
        -1_525,
        Direction.OUT,
        LineType.CASH_OUT,
    )
    assert (third.status, third.fee, third.net) == (LineStatus.FAILED, 0, 0)
    assert original.line_number == 5
    assert original.status is LineStatus.SUCCEEDED
    assert (reversal.line_number, reversal.type, reversal.status) == (6, LineType.REVERSAL, LineStatus.REVERSED)
    assert (reversal.amount, reversal.direction, reversal.fee) == (2_000, Direction.OUT, -20)
    assert reversal.provider_txn_id == f"{reversed_op.id}-R"
    assert first.occurred_at == cash_in.finished_at.replace(second=0, microsecond=0)  # type: ignore[union-attr]


def test_wave_report_from_the_simulator() -> None:
    sim = Simulation()
    checkout = sim.mobile("wave", "checkout", 5_000, Scenario.SUCCEED)
    payout = sim.mobile("wave", "payout", 3_000, Scenario.REVERSAL)
    declined = sim.mobile("wave", "checkout", 900, Scenario.DECLINE)
    data = render_report(ApiStyle.WAVE, [checkout, payout, declined], DAY).encode()
    report = parse_report(load_dialect("wave"), data)
    assert report.quarantined == []
    assert [(x.type, x.status, x.amount, x.direction, x.fee) for x in report.lines] == [
        (LineType.CASH_IN, LineStatus.SUCCEEDED, 5_000, Direction.IN, 50),
        (LineType.CASH_OUT, LineStatus.SUCCEEDED, 3_000, Direction.OUT, 30),
        (LineType.REVERSAL, LineStatus.REVERSED, 3_000, Direction.IN, -30),
    ]
    assert report.lines[0].occurred_at == checkout.finished_at
    assert report.lines[0].occurred_at.tzinfo is UTC


def test_card_report_from_the_simulator() -> None:
    sim = Simulation()
    captured = sim.card(6_000, Scenario.SUCCEED, refund=1_000)
    charged = sim.card(4_000, Scenario.CHARGEBACK)
    data = render_report(ApiStyle.CARD, [captured, charged], DAY).encode()
    report = parse_report(load_dialect("card"), data)
    assert report.quarantined == []
    assert [(x.type, x.status, x.amount, x.direction, x.fee) for x in report.lines] == [
        (LineType.CARD, LineStatus.SUCCEEDED, 6_000, Direction.IN, 133),
        (LineType.REFUND, LineStatus.SUCCEEDED, 1_000, Direction.OUT, 0),
        (LineType.CARD, LineStatus.SUCCEEDED, 4_000, Direction.IN, 97),
        (LineType.CHARGEBACK, LineStatus.CHARGED_BACK, 4_000, Direction.OUT, 0),
    ]
    assert report.lines[0].provider_parent_id == captured.id
    assert report.lines[0].our_reference == captured.external_id
    assert report.lines[0].occurred_at == captured.finished_at


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("10.50", "GHS", 1_050),
        ("1500.00", "XOF", 1_500),
        ("1500", "XOF", 1_500),
        ("-0.01", "EUR", 1),
        ("7.5", "USD", 750),
    ],
)
def test_major_amounts_are_exact(amount: str, currency: str, minor: int) -> None:
    data = f"{MOMO_HEADER}\r\n1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;{amount};{currency};;\r\n"
    dialect = load_dialect("momo")
    # no fee and net: give them as 0 and the amount so the net check passes
    data = data.replace(";;\r\n", f";0;{amount}\r\n")
    (line,) = parse_report(dialect, data.encode()).lines
    assert line.amount == minor


def test_momo_local_time_becomes_utc() -> None:
    """Africa/Abidjan is UTC+0; the conversion goes through the dialect's zone all the same."""
    data = f"{MOMO_HEADER}\r\n1;e;31/12/2026 23:59;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00\r\n".encode()
    (line,) = parse_report(load_dialect("momo"), data).lines
    assert line.occurred_at == datetime(2026, 12, 31, 23, 59, tzinfo=UTC)


def test_a_dialect_in_another_zone_shifts_the_day() -> None:
    shape = {**_momo_shape(), "time_zone": "Africa/Lagos"}  # UTC+1
    dialect = dialect_from_mapping(shape)
    data = f"{MOMO_HEADER}\r\n1;e;01/01/2027 00:30;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00\r\n".encode()
    (line,) = parse_report(dialect, data).lines
    assert line.occurred_at == datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert load_dialect("momo").time_zone == "Africa/Abidjan"


BAD_MOMO_LINES = [
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00", QuarantineReason.WRONG_COLUMN_COUNT),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00;x", QuarantineReason.WRONG_COLUMN_COUNT),
    ("1;e;2026-03-10 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00", QuarantineReason.BAD_DATE),
    ("1;e;31/02/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00", QuarantineReason.BAD_DATE),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.005;GHS;1.00;99.005", QuarantineReason.BAD_AMOUNT),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.50;XOF;1.00;99.50", QuarantineReason.BAD_AMOUNT),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;1e3;XOF;1.00;999.00", QuarantineReason.BAD_AMOUNT),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;1,000.00;XOF;1.00;999.00", QuarantineReason.BAD_AMOUNT),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;0.00;XOF;0.00;0.00", QuarantineReason.BAD_AMOUNT),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;NaN;XOF;1.00;99.00", QuarantineReason.BAD_AMOUNT),
    ("1;e;10/03/2026 09:05;PENDING;COLLECTION;100.00;XOF;1.00;99.00", QuarantineReason.UNKNOWN_STATUS),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;AIRTIME;100.00;XOF;1.00;99.00", QuarantineReason.UNKNOWN_TYPE),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;ZZZ;1.00;99.00", QuarantineReason.UNKNOWN_CURRENCY),
    ("1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;100.00", QuarantineReason.NET_MISMATCH),
    ("1;e;10/03/2026 09:05;FAILED;COLLECTION;100.00;XOF;0.00;100.00", QuarantineReason.NET_MISMATCH),
    (" ;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00", QuarantineReason.EMPTY_ID),
    ("   ", QuarantineReason.EMPTY_LINE),
    ('1;"e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00', QuarantineReason.WRONG_COLUMN_COUNT),
]


def test_every_bad_line_is_quarantined_with_its_number_and_reason() -> None:
    good = "1;e;10/03/2026 09:05;SUCCESSFUL;COLLECTION;100.00;XOF;1.00;99.00"
    rows = [good]
    for raw, _ in BAD_MOMO_LINES:
        rows += [raw, good]
    data = (MOMO_HEADER + "\r\n" + "\r\n".join(rows) + "\r\n").encode()
    report = parse_report(load_dialect("momo"), data)
    assert len(report.lines) == len(BAD_MOMO_LINES) + 1
    assert [(q.line_number, q.reason, q.raw) for q in report.quarantined] == [
        (3 + 2 * index, reason, raw) for index, (raw, reason) in enumerate(BAD_MOMO_LINES)
    ]
    assert len(report.lines) + len(report.quarantined) == len(data.splitlines()) - 1  # nothing dropped


def test_bad_bytes_and_bad_minor_amounts_are_quarantined() -> None:
    data = (
        WAVE_HEADER.encode()
        + b"\nT1,e,2026-03-10T09:05:07Z,succeeded,checkout,10.5,0,10.5,XOF\n"
        + b"T2,\xff\xfe,2026-03-10T09:05:07Z,succeeded,checkout,100,1,99,XOF\n"
        + b"T3,e,2026-03-10T09:05:07+01:00,succeeded,checkout,100,1,99,XOF\n"
    )
    report = parse_report(load_dialect("wave"), data)
    assert [(q.line_number, q.reason) for q in report.quarantined] == [
        (2, QuarantineReason.BAD_AMOUNT),
        (3, QuarantineReason.BAD_ENCODING),
    ]
    assert report.lines[0].occurred_at == datetime(2026, 3, 10, 8, 5, 7, tzinfo=UTC)


def test_card_lines_without_status_column_take_it_from_the_record_type() -> None:
    data = (
        f"{CARD_HEADER}\nSETTLEMENT|c|m|a|20260310|090507|XOF|100|0|100\nCAPTURE|c|m|a|20260310|250507|XOF|100|0|100\n"
    )
    report = parse_report(load_dialect("card"), data.encode())
    assert [(q.line_number, q.reason) for q in report.quarantined] == [
        (2, QuarantineReason.UNKNOWN_TYPE),
        (3, QuarantineReason.BAD_DATE),
    ]


def test_a_report_with_another_header_is_refused_whole() -> None:
    with pytest.raises(ReportError):
        parse_report(load_dialect("momo"), f"{WAVE_HEADER}\n".encode())
    with pytest.raises(ReportError):
        parse_report(load_dialect("momo"), b"")


def test_header_only_report_and_bom() -> None:
    report = parse_report(load_dialect("momo"), b"\xef\xbb\xbf" + MOMO_HEADER.encode() + b"\r\n")
    assert report.lines == []
    assert report.quarantined == []


def test_digest_is_stable_for_a_reimport_and_changes_with_the_content() -> None:
    sim = Simulation()
    data = render_report(ApiStyle.WAVE, [sim.mobile("wave", "checkout", 5_000, Scenario.SUCCEED)], DAY).encode()
    dialect = load_dialect("wave")
    assert parse_report(dialect, data).digest == parse_report(dialect, bytes(data)).digest == report_digest(data)
    assert len(report_digest(data)) == 64
    assert report_digest(data + b"\n") != report_digest(data)


def _momo_shape() -> dict[str, object]:
    text = resources.files("kora.reconciliation.dialects").joinpath("momo.json").read_text(encoding="utf-8")
    shape: dict[str, object] = json.loads(text)
    return shape
