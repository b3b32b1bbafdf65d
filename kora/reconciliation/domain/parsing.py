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
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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
    for item in iter_report(dialect, data):
        if isinstance(item, ReportLine):
            report.lines.append(item)
        else:
            report.quarantined.append(item)
    return report


def iter_report(dialect: Dialect, data: bytes) -> Iterator[ReportLine | Quarantined]:
    """The report's lines in file order, each parsed or quarantined, one at a time (what
    ``parse_report`` collects). ReportError, before any line, when the header row is not the
    dialect's."""
    raw_lines = data.removeprefix(_BOM).split(b"\n")
    if raw_lines and raw_lines[-1] in (b"", b"\r"):
        raw_lines.pop()  # the file's final line terminator
    start = 0
    if dialect.has_header_row:
        if not raw_lines:
            raise ReportError("the report is empty: no header row")
        header = _split(dialect, raw_lines[0].rstrip(b"\r").decode("utf-8", errors="replace"))
        if tuple(cell.strip() for cell in header) != dialect.header:
            raise ReportError(f"the header row is not the {dialect.name} dialect's")
        start = 1
    return _lines(_Reader(dialect), raw_lines, start)


def _lines(reader: _Reader, raw_lines: list[bytes], start: int) -> Iterator[ReportLine | Quarantined]:
    for index in range(start, len(raw_lines)):
        line_number = index + 1
        raw_bytes = raw_lines[index].rstrip(b"\r")
        raw_lines[index] = b""  # what is parsed need not be kept twice
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw_bytes.decode("utf-8", errors="replace")
            yield Quarantined(line_number, QuarantineReason.BAD_ENCODING, raw)
            continue
        try:
            yield reader.line(line_number, text)
        except _Refused as refused:
            yield Quarantined(line_number, refused.reason, text, refused.detail)


def _split(dialect: Dialect, text: str) -> list[str]:
    if '"' not in text and "\r" not in text and "\n" not in text and "\x00" not in text:
        # Without quotes or line breaks the csv module splits on the separator, nothing more:
        # str.split says the same, much faster.
        return text.split(dialect.separator)
    rows = list(csv.reader([text], delimiter=dialect.separator, strict=True))
    return rows[0] if rows else []


class _Reader:
    """One report's parsing state: the dialect's column positions, and what was already read
    for earlier lines (the same timestamp, currency or amount text reads the same way again)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        positions = {name: index for index, name in enumerate(dialect.header)}
        fields = {field: tuple(positions[c] for c in columns) for field, columns in dialect.columns.items()}
        self.single = [(field, found[0]) for field, found in fields.items() if len(found) == 1]
        self.joined = [(field, found) for field, found in fields.items() if len(found) > 1]
        self.columns = len(dialect.header)
        self.signed = dialect.sign is SignConvention.SIGNED
        self.zone = dialect.zone
        self.times: dict[str, datetime | None] = {}
        self.exponents: dict[str, int | None] = {}

    def values(self, cells: list[str]) -> dict[str, str]:
        """Our fields' texts (stripped; several columns joined with a space); absent ones left out."""
        found = {our_field: cells[position].strip() for our_field, position in self.single}
        for our_field, positions in self.joined:
            found[our_field] = " ".join(cells[position].strip() for position in positions)
        return found

    def line(self, line_number: int, text: str) -> ReportLine:
        dialect = self.dialect
        if not text.strip():
            raise _Refused(QuarantineReason.EMPTY_LINE)
        try:
            cells = _split(dialect, text)
        except csv.Error as exc:
            raise _Refused(QuarantineReason.WRONG_COLUMN_COUNT, str(exc)) from None
        if len(cells) != self.columns:
            raise _Refused(QuarantineReason.WRONG_COLUMN_COUNT, f"{len(cells)} columns, {self.columns} expected")
        value = self.values(cells).get
        provider_txn_id = value("provider_txn_id") or ""
        if not provider_txn_id:
            raise _Refused(QuarantineReason.EMPTY_ID, "no provider transaction id")
        type_text = value("type")
        type_word = dialect.types.get(type_text or "")
        if type_word is None:
            raise _Refused(QuarantineReason.UNKNOWN_TYPE, f"type {type_text!r}")
        status_word = value("status")
        if status_word is None:
            assert type_word.status is not None  # the dialect checked this on construction
            status = type_word.status
        elif status_word in dialect.statuses:
            status = dialect.statuses[status_word]
        else:
            raise _Refused(QuarantineReason.UNKNOWN_STATUS, f"status {status_word!r}")
        currency_code = value("currency") or dialect.currency or ""
        exponent = self.exponent(currency_code)
        occurred_at = self.timestamp(value("occurred_at") or "")
        amount = self.amount(value("amount") or "", exponent, "amount")
        if amount == 0:
            raise _Refused(QuarantineReason.BAD_AMOUNT, "a zero amount moves nothing")
        fee_text, net_text = value("fee"), value("net")
        fee = self.amount(fee_text, exponent, "fee") if fee_text is not None else None
        net = self.amount(net_text, exponent, "net") if net_text is not None else None
        if net is not None and fee is not None:
            expected = 0 if status in dialect.zero_net_statuses else amount - fee
            if net != expected:
                raise _Refused(QuarantineReason.NET_MISMATCH, f"net {net}, expected {expected}")
        if self.signed:
            direction: Direction | None = Direction.IN if amount > 0 else Direction.OUT
        else:
            direction = type_word.direction
        return ReportLine(
            line_number=line_number,
            provider_txn_id=provider_txn_id,
            our_reference=value("our_reference") or None,
            provider_parent_id=value("provider_parent_id") or None,
            occurred_at=occurred_at,
            status=status,
            type=type_word.type,
            amount=abs(amount),
            direction=direction,
            fee=fee,
            net=net,
            currency=currency_code,
        )

    def exponent(self, code: str) -> int:
        if code not in self.exponents:
            try:
                self.exponents[code] = currency(code).exponent
            except UnknownCurrency:
                self.exponents[code] = None
        exponent = self.exponents[code]
        if exponent is None:
            raise _Refused(QuarantineReason.UNKNOWN_CURRENCY, f"currency {code!r}")
        return exponent

    def timestamp(self, text: str) -> datetime:
        if text not in self.times:
            self.times[text] = _timestamp(self.dialect, self.zone, text)
        at = self.times[text]
        if at is None:
            raise _Refused(QuarantineReason.BAD_DATE, f"{text!r} matches none of {list(self.dialect.date_formats)}")
        return at

    def amount(self, text: str, exponent: int, what: str) -> int:
        return _amount(self.dialect, text, exponent, what)


def _timestamp(dialect: Dialect, zone: ZoneInfo, text: str) -> datetime | None:
    """``text`` in UTC, read with the first of the dialect's formats that fits; None if none does."""
    for date_format in dialect.date_formats:
        try:
            parsed = datetime.strptime(text, date_format)  # noqa: DTZ007 (the zone is applied just below)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.astimezone(UTC)
    return None


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
    # Exact integer arithmetic on the digits (what Decimal(text).scaleb(exponent) computes):
    # the sign can only lead, so "-12.50" reads as -1250 hundredths.
    whole, _, fraction = text.partition(".")
    scaled = int(whole + fraction)
    if exponent >= places:
        exact: int = scaled * 10 ** (exponent - places)
        return exact
    minor: int
    minor, rest = divmod(scaled, 10 ** (places - exponent))
    if rest:
        raise _Refused(QuarantineReason.BAD_AMOUNT, f"{what} {text!r} is finer than the currency's minor unit")
    return minor
