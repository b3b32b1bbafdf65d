"""A provider's settlement-report dialect, as data: which column holds what, the separator,
how dates, amounts and signs are written, and the provider's words for statuses and types.

A new provider is a new dialect (a JSON file read by ``dialect_from_mapping``), not new code.
A Dialect validates itself on construction and raises DialectError with what is wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kora.kernel import UnknownCurrency, currency
from kora.reconciliation.domain.report import Direction, LineStatus, LineType

REQUIRED_FIELDS = frozenset({"provider_txn_id", "occurred_at", "type", "amount"})
OPTIONAL_FIELDS = frozenset({"our_reference", "provider_parent_id", "status", "fee", "net", "currency"})


class DialectError(ValueError):
    """A dialect that cannot describe a report (unknown field, missing column, bad vocabulary...)."""


class AmountFormat(enum.StrEnum):
    MINOR = "minor"  # integers in the currency's minor units: "1050"
    MAJOR = "major"  # decimals in major units: "10.50"


class SignConvention(enum.StrEnum):
    SIGNED = "signed"  # negative = money out from the merchant's side
    UNSIGNED = "unsigned"  # always positive; the type word says which way the money went


@dataclass(frozen=True, slots=True)
class TypeWord:
    """What one of the provider's type words means: our line type, the status it implies when
    the report has no status column, and the direction when amounts are unsigned."""

    type: LineType
    status: LineStatus | None = None
    direction: Direction | None = None


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    separator: str
    header: tuple[str, ...]
    # our field -> the provider's column(s); several columns are joined with a space (date + time)
    columns: Mapping[str, tuple[str, ...]]
    date_formats: tuple[str, ...]
    time_zone: str
    amount_format: AmountFormat
    decimals: int
    sign: SignConvention
    statuses: Mapping[str, LineStatus]
    types: Mapping[str, TypeWord]
    has_header_row: bool = True
    currency: str | None = None  # the one currency of a report without a currency column
    zero_net_statuses: frozenset[LineStatus] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _check(bool(self.name) and self.name.isidentifier(), "name must be a plain identifier")
        _check(len(self.separator) == 1 and self.separator not in '"\r\n', "separator must be one character")
        _check(len(self.header) > 0 and len(set(self.header)) == len(self.header), "header needs unique columns")
        unknown = set(self.columns) - REQUIRED_FIELDS - OPTIONAL_FIELDS
        _check(not unknown, f"unknown fields {sorted(unknown)}")
        missing = REQUIRED_FIELDS - set(self.columns)
        _check(not missing, f"missing required fields {sorted(missing)}")
        for our_field, theirs in self.columns.items():
            _check(len(theirs) > 0, f"field {our_field} names no column")
            absent = [column for column in theirs if column not in self.header]
            _check(not absent, f"field {our_field} names columns not in the header: {absent}")
        _check(len(self.date_formats) > 0, "at least one date format is needed")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise DialectError(f"unknown time zone {self.time_zone!r}") from None
        if self.amount_format is AmountFormat.MINOR:
            _check(self.decimals == 0, "minor-unit amounts have no decimals")
        _check(0 <= self.decimals <= 6, "decimals must be between 0 and 6")
        _check(len(self.types) > 0, "the type vocabulary is empty")
        if "status" not in self.columns:
            silent = [word for word, meaning in self.types.items() if meaning.status is None]
            _check(not silent, f"without a status column every type word needs a status: {silent}")
        else:
            _check(len(self.statuses) > 0, "the status vocabulary is empty")
        if "currency" not in self.columns:
            _check(self.currency is not None, "a report without a currency column needs a fixed currency")
        if self.currency is not None:
            try:
                currency(self.currency)
            except UnknownCurrency:
                raise DialectError(f"unknown currency {self.currency!r}") from None
        if "net" in self.columns:
            _check("fee" in self.columns, "a net column needs a fee column to be checked against")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DialectError(message)


def dialect_from_mapping(data: Mapping[str, Any]) -> Dialect:
    """A Dialect from its JSON shape (see ``kora/reconciliation/dialects/*.json``); DialectError
    for anything missing, misspelt or of the wrong type."""
    known = {
        "name", "separator", "header", "has_header_row", "columns", "date_formats", "time_zone",
        "amount", "statuses", "types", "currency", "zero_net_statuses", "description",
    }  # fmt: skip
    extra = set(data) - known
    _check(not extra, f"unknown keys {sorted(extra)}")
    try:
        amount = data["amount"]
        return Dialect(
            name=str(data["name"]),
            separator=str(data["separator"]),
            header=tuple(_strings(data["header"], "header")),
            has_header_row=bool(data.get("has_header_row", True)),
            columns={key: tuple(_strings(value, key)) for key, value in dict(data["columns"]).items()},
            date_formats=tuple(_strings(data["date_formats"], "date_formats")),
            time_zone=str(data.get("time_zone", "UTC")),
            amount_format=AmountFormat(amount["format"]),
            decimals=_integer(amount.get("decimals", 0), "decimals"),
            sign=SignConvention(amount.get("sign", "signed")),
            statuses={str(word): LineStatus(ours) for word, ours in dict(data.get("statuses", {})).items()},
            types={str(word): _type_word(meaning) for word, meaning in dict(data["types"]).items()},
            currency=str(data["currency"]) if data.get("currency") is not None else None,
            zero_net_statuses=frozenset(LineStatus(s) for s in _strings(data.get("zero_net_statuses", []), "net")),
        )
    except KeyError as exc:
        raise DialectError(f"missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DialectError):
            raise
        raise DialectError(str(exc)) from None


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DialectError(f"{what} must be a string or a list of strings")
    return list(value)


def _integer(value: Any, what: str) -> int:
    if type(value) is not int:
        raise DialectError(f"{what} must be an integer")
    return value


def _type_word(meaning: Any) -> TypeWord:
    if isinstance(meaning, str):
        return TypeWord(LineType(meaning))
    if not isinstance(meaning, dict):
        raise DialectError("a type word maps to a type or to {type, status, direction}")
    extra = set(meaning) - {"type", "status", "direction"}
    _check(not extra, f"unknown type word keys {sorted(extra)}")
    status = meaning.get("status")
    direction = meaning.get("direction")
    return TypeWord(
        type=LineType(meaning["type"]),
        status=LineStatus(status) if status is not None else None,
        direction=Direction(direction) if direction is not None else None,
    )
