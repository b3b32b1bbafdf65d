"""Dialects are data, validated when built: a new provider is a new JSON file."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from kora.reconciliation import (
    DialectError,
    LineStatus,
    LineType,
    available_dialects,
    dialect_from_mapping,
    load_dialect,
)


def shape(name: str = "wave") -> dict[str, Any]:
    text = resources.files("kora.reconciliation.dialects").joinpath(f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_the_three_shipped_dialects_load() -> None:
    assert available_dialects() == ("card", "momo", "wave")
    momo, wave, card = load_dialect("momo"), load_dialect("wave"), load_dialect("card")
    assert (momo.separator, wave.separator, card.separator) == (";", ",", "|")
    assert momo.statuses["SUCCESSFUL"] is LineStatus.SUCCEEDED
    assert card.types["CHARGEBACK"].type is LineType.CHARGEBACK
    assert card.columns["occurred_at"] == ("TXN_DATE", "TXN_TIME")


def test_a_new_provider_is_a_new_mapping() -> None:
    data = shape() | {"name": "orange", "separator": "\t", "currency": "XOF"}
    data["columns"] = {k: v for k, v in data["columns"].items() if k != "currency"}
    dialect = dialect_from_mapping(data)
    assert (dialect.name, dialect.currency) == ("orange", "XOF")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"separator": ";;"}, "separator"),
        ({"time_zone": "Mars/Olympus"}, "time zone"),
        ({"amount": {"format": "minor", "decimals": 2}}, "decimals"),
        ({"amount": {"format": "cents"}}, "cents"),
        ({"statuses": {"ok": "fine"}}, "fine"),
        ({"types": {}}, "type vocabulary"),
        ({"date_formats": []}, "date format"),
        ({"colour": "blue"}, "unknown keys"),
        ({"header": ["a", "a"]}, "unique"),
        ({"currency": "ZZZ"}, "currency"),
    ],
)
def test_invalid_dialects_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(DialectError, match=message):
        dialect_from_mapping(shape() | change)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"provider_txn_id": "transaction_id"}, "missing required"),
        ({"colour": "x"}, "unknown fields"),
        ({"amount": "montant"}, "not in the header"),
    ],
)
def test_column_mappings_are_checked(columns: dict[str, str], message: str) -> None:
    data = shape()
    data["columns"] = columns if "colour" not in columns and "amount" not in columns else data["columns"] | columns
    with pytest.raises(DialectError, match=message):
        dialect_from_mapping(data)


def test_without_a_status_column_every_type_word_implies_one() -> None:
    data = shape()
    data["columns"] = {k: v for k, v in data["columns"].items() if k != "status"}
    with pytest.raises(DialectError, match="needs a status"):
        dialect_from_mapping(data)


def test_missing_keys_and_unknown_names() -> None:
    data = shape()
    del data["amount"]
    with pytest.raises(DialectError, match="missing key 'amount'"):
        dialect_from_mapping(data)
    with pytest.raises(DialectError):
        load_dialect("../momo")
    with pytest.raises(DialectError, match="no dialect"):
        load_dialect("nowhere")
