"""The labelled synthetic dataset is deterministic, round-trips through its file, and the
shipped policy catches every injected pattern (recall 100 %)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kora.cli import main
from kora.risk import DEFAULT_POLICY_PATH, load_policy
from kora.risk.evaluation.dataset import PATTERNS, Dataset, generate
from kora.risk.evaluation.replay import evaluate

POLICY = load_policy(DEFAULT_POLICY_PATH)


def test_the_dataset_is_deterministic_by_seed_and_labels_every_pattern() -> None:
    a = generate(seed=7, customers=40, policy=POLICY)
    b = generate(seed=7, customers=40, policy=POLICY)
    c = generate(seed=8, customers=40, policy=POLICY)
    assert a == b
    assert a.payments != c.payments
    labels = {p.label for p in a.payments}
    assert labels == {None, *PATTERNS}
    ats = [p.request.at for p in a.payments]
    assert ats == sorted(ats)
    assert all(p.request.at >= a.warmup_until for p in a.payments if p.label)


def test_the_dataset_round_trips_through_its_file(tmp_path: Path) -> None:
    dataset = generate(seed=3, customers=30, policy=POLICY)
    path = tmp_path / "risk.jsonl"
    dataset.write(path)
    assert Dataset.read(path) == dataset


def test_every_injected_pattern_is_caught_on_a_small_seed() -> None:
    result = evaluate(generate(seed=11, customers=60, policy=POLICY), POLICY)
    for pattern in result.patterns:
        assert pattern.instances >= 2, pattern
        assert pattern.caught == pattern.instances, pattern
        assert pattern.true_flags >= 1
    assert result.all_caught
    assert result.normal > 1_000
    assert result.false_positive_rate < 0.03


def test_kora_risk_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    checked = runner.invoke(main, ["risk", "check-policy"])
    assert checked.exit_code == 0, checked.output
    assert POLICY.version in checked.output
    out = tmp_path / "d.jsonl"
    made = runner.invoke(main, ["risk", "dataset", "--seed", "5", "--customers", "40", "--out", str(out)])
    assert made.exit_code == 0, made.output
    evaluated = runner.invoke(main, ["risk", "evaluate", "--dataset", str(out), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(evaluated.output)
    assert set(figures["patterns"]) == set(PATTERNS)
    assert all(p["recall"] == 1.0 for p in figures["patterns"].values())
    text = runner.invoke(main, ["risk", "evaluate", "--seed", "5", "--customers", "40"])
    assert text.exit_code == 0
    assert "precision" in text.output
    assert "false-positive rate" in text.output


def test_evaluate_exits_1_when_a_pattern_is_missed(tmp_path: Path) -> None:
    lenient = DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
        "distinct_recipients: 5", "distinct_recipients: 50"
    )
    path = tmp_path / "lenient.yaml"
    path.write_text(lenient, encoding="utf-8")
    result = CliRunner().invoke(main, ["risk", "evaluate", "--seed", "5", "--customers", "40", "--policy", str(path)])
    assert result.exit_code == 1
    assert "fan_out" in result.output


def test_an_invalid_policy_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: x\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["risk", "check-policy", str(path)])
    assert result.exit_code != 0
    assert "invalid policy" in result.output
