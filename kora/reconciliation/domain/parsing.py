"""Settlement report bytes → ReportLines in Kora's words, through a Dialect.

Every line after the header is either parsed or quarantined with its line number and reason:
nothing is dropped silently. Amounts are parsed exactly (Decimal, never float) into the
currency's minor units; times become timezone-aware UTC datetimes. Quoted fields spanning
several lines are not supported (such a line is quarantined as ``wrong_column_count``).
"""

from __future__ import annotations

import csv
import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal

from kora.kernel import UnknownCurrency, currency
from kora.reconciliation.domain.dialect import AmountFormat, Dialect, SignConvention
from kora.reconciliation.domain.report import (
    Direction,
    ParsedReport,
    Quarantined,
    QuarantineReason,
    ReportLine,
)

_MINOR = re.compile(r"^[+-]?[0-9]+$")
_MAJOR = re.compile(r"^[+-]?[0-9]+(?:\.([0-9]+))?$")
_BOM = b"\xef\xbb\xbf"


class ReportError(ValueError):
    """The whole report is unreadable with this dialect (e.g. its header is not the dialect's)."""


class _Refused(Exception):
    def __init__(self, reason: QuarantineReason, detail: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def report_digest(data: bytes) -> str:
    """The sha256 of the report's bytes: the same file imported twice has the same digest."""
    return hashlib.sha256(data).hexdigest()


def parse_report(dialect: Dialect, data: bytes) -> ParsedReport:
    """Parse ``data`` with ``dialect``. ReportError when the header row is not the dialect's."""
    report = ParsedReport(dialect=dialect.name, digest=report_digest(data))
    raw_lines = data.removeprefix(_BOM).split(b"\n")
    if raw_lines and raw_lines[-1] in (b"", b"\r"):
        raw_lines.pop()  # the file's final line terminator
    positions = {name: index for index, name in enumerate(dialect.header)}
    start = 0
    if dialect.has_header_row:
        if not raw_lines:
            raise ReportError("the report is empty: no header row")
        header = _split(dialect, raw_lines[0].rstrip(b"\r").decode("utf-8", errors="replace"))
        if tuple(cell.strip() for cell in header) != dialect.header:
            raise ReportError(f"the header row is not the {dialect.name} dialect's")
        start = 1
    for index in range(start, len(raw_lines)):
        line_number = index + 1
        raw_bytes = raw_lines[index].rstrip(b"\r")
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw_bytes.decode("utf-8", errors="replace")
            report.quarantined.append(Quarantined(line_number, QuarantineReason.BAD_ENCODING, raw))
            continue
        try:
            report.lines.append(_line(dialect, positions, line_number, text))
        except _Refused as refused:
            report.quarantined.append(Quarantined(line_number, refused.reason, text, refused.detail))
    return report


def _split(dialect: Dialect, text: str) -> list[str]:
    rows = list(csv.reader([text], delimiter=dialect.separator, strict=True))
    return rows[0] if rows else []


def _line(dialect: Dialect, positions: dict[str, int], line_number: int, text: str) -> ReportLine:
    if not text.strip():
        raise _Refused(QuarantineReason.EMPTY_LINE)
    try:
        cells = _split(dialect, text)
    except csv.Error as exc:
        raise _Refused(QuarantineReason.WRONG_COLUMN_COUNT, str(exc)) from None
    if len(cells) != len(dialect.header):
        raise _Refused(QuarantineReason.WRONG_COLUMN_COUNT, f"{len(cells)} columns, {len(dialect.header)} expected")

    def value(our_field: str) -> str | None:
        columns = dialect.columns.get(our_field)
        if columns is None:
            return None
        return " ".join(cells[positions[column]].strip() for column in columns)

    provider_txn_id = value("provider_txn_id") or ""
    if not provider_txn_id:
        raise _Refused(QuarantineReason.EMPTY_ID, "no provider transaction id")
    type_word = dialect.types.get(value("type") or "")
    if type_word is None:
        raise _Refused(QuarantineReason.UNKNOWN_TYPE, f"type {value('type')!r}")
    status_word = value("status")
    if status_word is None:
        assert type_word.status is not None  # the dialect checked this on construction
        status = type_word.status
    elif status_word in dialect.statuses:
        status = dialect.statuses[status_word]
    else:
        raise _Refused(QuarantineReason.UNKNOWN_STATUS, f"status {status_word!r}")
    currency_code = value("currency") or dialect.currency or ""
    try:
        exponent = currency(currency_code).exponent
    except UnknownCurrency:
        raise _Refused(QuarantineReason.UNKNOWN_CURRENCY, f"currency {currency_code!r}") from None
    occurred_at = _timestamp(dialect, value("occurred_at") or "")
    amount = _amount(dialect, value("amount") or "", exponent, "amount")
    if amount == 0:
        raise _Refused(QuarantineReason.BAD_AMOUNT, "a zero amount moves nothing")
    fee_text, net_text = value("fee"), value("net")
    fee = _amount(dialect, fee_text, exponent, "fee") if fee_text is not None else None
    net = _amount(dialect, net_text, exponent, "net") if net_text is not None else None
    if net is not None and fee is not None:
        expected = 0 if status in dialect.zero_net_statuses else amount - fee
        if net != expected:
            raise _Refused(QuarantineReason.NET_MISMATCH, f"net {net}, expected {expected}")
    return ReportLine(
        line_number=line_number,
        provider_txn_id=provider_txn_id,
        our_reference=value("our_reference") or None,
        provider_parent_id=value("provider_parent_id") or None,
        occurred_at=occurred_at,
        status=status,
        type=type_word.type,
        amount=abs(amount),
        direction=_direction(dialect, amount, type_word.direction),
        fee=fee,
        net=net,
        currency=currency_code,
    )


def _direction(dialect: Dialect, amount: int, word_direction: Direction | None) -> Direction | None:
    if dialect.sign is SignConvention.SIGNED:
        return Direction.IN if amount > 0 else Direction.OUT
    return word_direction


def _timestamp(dialect: Dialect, text: str) -> datetime:
    for date_format in dialect.date_formats:
        try:
            parsed = datetime.strptime(text, date_format)  # noqa: DTZ007 (the zone is applied just below)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dialect.zone)
        return parsed.astimezone(UTC)
    raise _Refused(QuarantineReason.BAD_DATE, f"{text!r} matches none of {list(dialect.date_formats)}")


def _amount(dialect: Dialect, text: str, exponent: int, what: str) -> int:
    """``text`` in minor units, exactly; _Refused(bad_amount) for anything that is not."""
    if dialect.amount_format is AmountFormat.MINOR:
        if not _MINOR.match(text):
            raise _Refused(QuarantineReason.BAD_AMOUNT, f"{what} {text!r} is not an integer of minor units")
        return int(text)
    match = _MAJOR.match(text)
    if match is None:
        raise _Refused(QuarantineReason.BAD_AMOUNT, f"{what} {text!r} is not a decimal number")
    places = len(match.group(1) or "")
    if places > dialect.decimals:
        raise _Refused(QuarantineReason.BAD_AMOUNT, f"{what} {text!r} has more than {dialect.decimals} decimals")
    minor = Decimal(text).scaleb(exponent)
    if minor != minor.to_integral_value():
        raise _Refused(QuarantineReason.BAD_AMOUNT, f"{what} {text!r} is finer than the currency's minor unit")
    return int(minor)
