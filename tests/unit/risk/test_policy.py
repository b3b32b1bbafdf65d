"""Strict policy validation, the shipped policy, and reloading the policy file (an invalid new
file keeps the last good policy)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kora.observability.testing import capture_logs
from kora.risk import DEFAULT_POLICY_PATH, FilePolicySource, PaymentType, PolicyError, Window, load_policy, parse_policy

from .factories import policy_document


def broken(mutate: Any) -> dict[str, Any]:
    document = copy.deepcopy(policy_document())
    mutate(document)
    return document


def _set(path: list[str], value: Any) -> Any:
    def mutate(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set(["surprise"], 1), "policy: unknown key(s) surprise"),
        (_set(["tiers", "tier0", "p2p", "per_transaction", "soft"], 10_000.5), "expected an integer"),
        (_set(["tiers", "tier0", "p2p", "per_transaction", "soft"], True), "expected an integer"),
        (_set(["tiers", "tier0", "p2p", "per_transaction", "soft"], "10000"), "expected an integer"),
        (_set(["tiers", "tier0", "p2p", "per_transaction", "soft"], 0), "must be >= 1"),
        (_set(["tiers", "tier0", "p2p", "per_transaction"], {"soft": 20_000, "hard": 20_000}), "must be below hard"),
        (_set(["tiers", "tier0", "p2p", "per_transaction"], {}), "needs a soft or a hard limit"),
        (_set(["tiers", "tier0", "p2p", "per_transaction", "max"], 5), "unknown key(s) max"),
        (_set(["tiers", "tier0", "p2p", "amount", "fortnight"], {"hard": 5}), "unknown window 'fortnight'"),
        (_set(["tiers", "tier0", "p2p", "velocity"], {}), "tiers.tier0.p2p: unknown key(s) velocity"),
        (_set(["tiers", "tier0", "crypto"], {"per_transaction": {"hard": 1}}), "unknown payment type 'crypto'"),
        (lambda d: d["tiers"]["tier0"].pop("card"), "tiers.tier0: missing payment type(s) card"),
        (_set(["tiers", "tier0", "cash_out", "per_transaction"], {"soft": 5_000, "hard": 30_000}),
         "looser than the p2p limit"),
        (_set(["tiers", "tier0", "cash_out", "amount", "day"], {"soft": 55_000, "hard": 60_000}),
         "cash_out.amount.day.soft"),
        (_set(["currency"], "ZZZ"), "unknown or unsupported currency"),
        (_set(["version"], ""), "version"),
        (lambda d: d.pop("version"), "missing key(s) version"),
        (_set(["score"], {"review_at": 50, "deny_at": 50}), "review_at must be below deny_at"),
        (_set(["device_cooling"], {"hours": 24, "limit_percent": 150}), "between 1 and 100"),
        (_set(["flags"], {"fan_out": {"points": 10, "window_minutes": 60}}), "missing key(s) distinct_recipients"),
        (_set(["flags"], {"velocity": {"points": 10}}), "flags: unknown key(s) velocity"),
        (_set(["flags"], {"structuring": {"points": 1, "within_percent": 10, "min_prior": 1, "window": "year"}}),
         "unknown window 'year'"),
        (_set(["flags"], {"fan_out": {"points": 1, "window_minutes": 5, "distinct_recipients": 3,
                                      "applies_to": ["wire"]}}), "unknown payment type 'wire'"),
        (_set(["tiers"], []), "tiers: expected a mapping"),
    ],
)  # fmt: skip
def test_invalid_policies_are_refused_with_the_place_of_the_error(mutate: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_policy(broken(mutate))


def test_the_shipped_policy_is_valid_and_covers_every_tier_and_type() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.version
    assert policy.currency == "XOF"
    assert set(policy.tiers) == {"tier0", "tier1", "tier2"}
    for tier in policy.tiers.values():
        assert set(tier) == set(PaymentType)
        p2p, cash_out = tier[PaymentType.P2P], tier[PaymentType.CASH_OUT]
        assert cash_out.per_transaction.lowest() < p2p.per_transaction.lowest()
        assert cash_out.amount[Window.DAY].lowest() < p2p.amount[Window.DAY].lowest()
        assert p2p.per_recipient
        assert {Window.HOUR, Window.DAY} <= set(p2p.count)
        assert {Window.HOUR, Window.DAY, Window.WEEK, Window.MONTH} <= set(p2p.amount)
    flags = policy.flags
    assert all(getattr(flags, name) is not None for name in flags.__dataclass_fields__)


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")


def test_the_policy_file_reloads_when_its_content_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, policy_document(version="v1"))
    source = FilePolicySource(path, check_every=0)
    first_digest = source.digest
    assert source.current().version == "v1"
    assert source.reload() is False  # same content: nothing to do
    _write(path, policy_document(version="v2"))
    assert source.current().version == "v2"
    assert source.digest != first_digest
    assert source.last_error is None


def test_an_invalid_new_file_keeps_the_last_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, policy_document(version="v1"))
    source = FilePolicySource(path, check_every=0)
    good_digest = source.digest
    _write(path, policy_document(version="v2", surprise=True))
    assert source.reload() is False
    assert source.current().version == "v1"
    assert source.digest == good_digest
    assert source.last_error is not None
    assert "surprise" in source.last_error
    path.write_text("tiers: [unclosed", encoding="utf-8")
    assert source.current().version == "v1"
    assert "not valid YAML" in (source.last_error or "")
    path.unlink()
    assert source.current().version == "v1"
    assert "unreadable" in (source.last_error or "")
    _write(path, policy_document(version="v3"))
    assert source.current().version == "v3"
    assert source.last_error is None


def test_the_file_is_checked_at_most_every_check_every_seconds(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, policy_document(version="v1"))
    source = FilePolicySource(path, check_every=3600)
    _write(path, policy_document(version="v2"))
    assert source.current().version == "v1"  # not yet re-read
    assert source.reload() is True
    assert source.current().version == "v2"


def test_a_service_never_starts_without_a_valid_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, policy_document(currency="ZZZ"))
    with pytest.raises(PolicyError):
        FilePolicySource(path)


def test_a_refused_file_is_logged_once_and_a_reload_is_logged_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, policy_document(version="v1"))
    source = FilePolicySource(path, check_every=0)
    with capture_logs() as lines:
        _write(path, policy_document(version="v2", surprise=True))
        source.current()
        source.current()
        _write(path, policy_document(version="v2"))
        source.current()
    records = [json.loads(line) for line in lines]
    refused = [r for r in records if "refused" in r["message"]]
    assert len(refused) == 1
    assert refused[0]["level"] == "ERROR"
    assert refused[0]["version"] == "v1"
    assert "surprise" in refused[0]["error"]
    reloaded = [r for r in records if r["message"] == "risk policy reloaded"]
    assert [(r["previous_version"], r["version"]) for r in reloaded] == [("v1", "v2")]
