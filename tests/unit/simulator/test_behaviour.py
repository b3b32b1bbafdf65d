from __future__ import annotations

import pytest

from kora.simulator import BehaviourMix, Decline, Scenario, magic_behaviour, select_behaviour
from kora.simulator.behaviour import decline_code, draw, mixed_behaviour
from kora.simulator.config import ApiStyle


@pytest.mark.parametrize(
    ("party", "scenario"),
    [
        ("2250700000001", Scenario.DECLINE),
        ("+225 07 0000 0020", Scenario.LATE_SUCCESS),
        ("4000000000000070", Scenario.CHARGEBACK),
        ("2250700000031", Scenario.DUPLICATE_CALLBACK),
    ],
)
def test_magic_suffixes(party: str, scenario: Scenario) -> None:
    behaviour = magic_behaviour(party)
    assert behaviour is not None
    assert behaviour.scenario is scenario


@pytest.mark.parametrize("party", [None, "2250701234567", "2250700000099", "00001"])
def test_ordinary_or_unknown_numbers_are_not_magic(party: str | None) -> None:
    assert magic_behaviour(party) is None


def test_amount_rules_come_first_then_msisdn_then_mix() -> None:
    mix = BehaviourMix(timeout=1.0)
    common = {"reference": "r", "seed": 1, "mix": mix}
    assert select_behaviour(party="2250700000002", amount=777, amount_rules={777: "20"}, **common).scenario is (
        Scenario.LATE_SUCCESS
    )
    declined = select_behaviour(party="2250700000002", amount=1, amount_rules={}, **common)
    assert (declined.scenario, declined.decline) == (Scenario.DECLINE, Decline.INSUFFICIENT_FUNDS)
    assert select_behaviour(party="2250701234567", amount=1, amount_rules={}, **common).scenario is Scenario.TIMEOUT
    with pytest.raises(ValueError, match="unknown magic code"):
        select_behaviour(party=None, amount=5, amount_rules={5: "99"}, **common)


def test_mix_is_deterministic_per_reference_and_close_to_its_rates() -> None:
    mix = BehaviourMix(timeout=0.10, late_success=0.05, lost_callback=0.02, duplicate_callback=0.01)
    picks = [mixed_behaviour(mix, 7, f"ref-{n}").scenario for n in range(20_000)]
    assert picks == [mixed_behaviour(mix, 7, f"ref-{n}").scenario for n in range(20_000)]
    assert 0.09 < picks.count(Scenario.TIMEOUT) / 20_000 < 0.11
    assert 0.04 < picks.count(Scenario.LATE_SUCCESS) / 20_000 < 0.06
    assert 0 <= draw(1, "x") < 1


def test_mix_over_one_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 1"):
        BehaviourMix(timeout=0.6, decline=0.5)


def test_decline_codes_in_each_dialect() -> None:
    assert decline_code(ApiStyle.MOMO, Decline.PARTY_NOT_FOUND) == "PAYER_NOT_FOUND"
    assert decline_code(ApiStyle.MOMO, Decline.PARTY_NOT_FOUND, payee=True) == "PAYEE_NOT_FOUND"
    assert decline_code(ApiStyle.WAVE, Decline.INSUFFICIENT_FUNDS) == "insufficient-funds"
    assert decline_code(ApiStyle.CARD, Decline.NOT_APPROVED) == "do_not_honor"
