"""The routing table: ordered providers per operation and currency, validated on load.
(Fallback itself is tested with the payments: tests/unit/payments/test_payments_routing.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from kora.providers.routing import RoutingTable

TABLE = RoutingTable.from_mapping(
    {"disburse": {"XOF": ["mtn", "wave", "orange"], "*": ["sandbox"]}, "collect": {"XOF": ["wave"]}}
)


def test_table_lookup_and_wildcard() -> None:
    assert TABLE.providers_for("disburse", "XOF") == ("mtn", "wave", "orange")
    assert TABLE.providers_for("disburse", "XAF") == ("sandbox",)
    assert TABLE.providers_for("collect", "XAF") == ()
    assert TABLE.provider_names() == {"mtn", "wave", "orange", "sandbox"}


def test_table_from_json_and_validation() -> None:
    table = RoutingTable.from_json('{"collect": {"XOF": ["mtn", "wave"]}}')
    assert table.providers_for("collect", "XOF") == ("mtn", "wave")
    bad_tables: tuple[dict[str, Any], ...] = (
        {"collect": {"XOF": []}},
        {"collect": {"XOF": ["mtn", "mtn"]}},
        {"collect": {"xof": ["mtn"]}},
        {"Collect!": {"XOF": ["mtn"]}},
        {"collect": {"XOF": "mtn"}},
        {"collect": {"XOF": ["+22507000000"]}},
    )
    for bad in bad_tables:
        with pytest.raises(ValueError):  # noqa: PT011
            RoutingTable.from_mapping(bad)
    with pytest.raises(ValueError, match="object"):
        RoutingTable.from_json("[]")
    with pytest.raises(ValueError, match="orange"):
        TABLE.check_configured(["mtn", "wave", "sandbox"])
    TABLE.check_configured(["mtn", "wave", "orange", "sandbox"])
