"""Each provider's match rules as data: the shipped files load, agree with the fee schedules the
provider simulator charges, refuse typos, and a deployment's own directory replaces them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from kora.reconciliation import available_dialects
from kora.reconciliation.domain.report import LineType
from kora.reconciliation.domain.rules import FeeRule, MatchRules, RulesError, rules_from_mapping
from kora.reconciliation.schedules import _load, load_rules
from kora.simulator.config import default_providers

# The simulator's operation kinds, as report line types.
_LINE_TYPE = {
    "collection": LineType.CASH_IN,
    "checkout": LineType.CASH_IN,
    "disbursement": LineType.CASH_OUT,
    "payout": LineType.CASH_OUT,
    "capture": LineType.CARD,
}


@pytest.mark.parametrize("provider", available_dialects())
def test_every_dialect_has_rules_that_charge_what_the_simulator_charges(provider: str) -> None:
    rules = load_rules(provider)
    simulated = default_providers()[provider].fees
    assert set(rules.fees) == {_LINE_TYPE[kind] for kind in simulated}
    for kind, rule in simulated.items():
        ours = rules.fees[_LINE_TYPE[kind]]
        for amount in (1, 99, 100, 2_500, 10_000, 1_234_567):
            assert ours.fee_for(amount) == rule.fee_for(amount), (provider, kind, amount)
    assert rules.fallback_window == timedelta(hours=2)
    assert rules.grace_period == timedelta(days=1)


def test_a_provider_without_a_file_has_its_fees_unchecked() -> None:
    assert load_rules("someprovider") == MatchRules()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"provider": "x", "fee": {}}, "unknown keys: fee"),
        ({"provider": "x", "fees": {"cashin": {"bps": 1}}}, "unknown line type"),
        ({"provider": "x", "fees": {"cash_in": {"bsp": 1}}}, "fees.cash_in"),
        ({"provider": "x", "fees": {"cash_in": {"bps": -1}}}, "fees.cash_in"),
        ({"provider": "x", "fees": {"cash_in": {"bps": 1, "min_fee": 9, "max_fee": 3}}}, "fees.cash_in"),
        ({"provider": "x", "fallback_window_minutes": -5}, "fallback_window_minutes"),
        ({"provider": "x", "grace_period_hours": "24"}, "grace_period_hours"),
        ({"provider": "x", "reversal_refunds_fee": "yes"}, "reversal_refunds_fee"),
    ],
)
def test_a_typo_is_refused_never_a_check_silently_dropped(data: dict[str, object], problem: str) -> None:
    with pytest.raises(RulesError, match=problem):
        rules_from_mapping(data)


def test_a_null_window_disables_the_amount_fallback() -> None:
    rules = rules_from_mapping({"provider": "x", "fallback_window_minutes": None, "grace_period_hours": 48})
    assert (rules.fallback_window, rules.grace_period) == (None, timedelta(hours=48))


def test_a_deployments_directory_replaces_the_shipped_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "momo.json").write_text(json.dumps({"provider": "momo", "fees": {"cash_in": {"bps": 150}}}))
    (tmp_path / "wave.json").write_text(json.dumps({"provider": "momo"}))  # names another provider
    monkeypatch.setenv("KORA_RECON_RULES_DIR", str(tmp_path))
    _load.cache_clear()
    try:
        assert load_rules("momo").fees == {LineType.CASH_IN: FeeRule(bps=150)}
        with pytest.raises(RulesError, match="naming it as its provider"):
            load_rules("wave")
        assert load_rules("card") == MatchRules()  # not in the directory: fees unchecked
    finally:
        _load.cache_clear()
