"""The mixed benchmark's pure parts: the mix, the lanes, percentiles and the report."""

from __future__ import annotations

import math

import pytest

from kora.bench_mixed import Lane, LaneStats, MixedResult, parse_mix, percentile, plan_lanes


def test_a_mix_names_operations_with_weights() -> None:
    assert parse_mix("p2p=3,cash_out=1") == {"p2p": 3, "merchant": 0, "cash_in": 0, "cash_out": 1}
    for bad in ("p2p", "p2p=x", "refund=2", "p2p=0,cash_in=0"):
        with pytest.raises(ValueError, match="mix"):
            parse_mix(bad)


def test_workers_are_split_by_weight_and_provider_lanes_by_provider() -> None:
    lanes = plan_lanes({"p2p": 50, "merchant": 0, "cash_in": 25, "cash_out": 25}, 8, ["momo", "wave"])
    assert [(lane.name, lane.workers) for lane in lanes] == [
        ("p2p", 4),
        ("cash_in@momo", 1),
        ("cash_in@wave", 1),
        ("cash_out@momo", 1),
        ("cash_out@wave", 1),
    ]
    # Every operation with a weight gets at least one worker.
    assert [
        lane.workers for lane in plan_lanes({"p2p": 99, "merchant": 1, "cash_in": 0, "cash_out": 0}, 4, [None])
    ] == [
        4,
        1,
    ]


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 0.5) == pytest.approx(51.0)
    assert percentile(values, 0.95) == pytest.approx(95.0)
    assert percentile(values, 1.0) == pytest.approx(100.0)
    assert math.isnan(percentile([], 0.5))


def test_the_report_separates_internal_from_provider_latencies() -> None:
    lanes = [Lane("p2p", workers=2), Lane("cash_in", "momo", workers=1)]
    result = MixedResult(
        concurrency=3,
        duration=2.0,
        lanes=lanes,
        stats={"p2p": LaneStats([0.01, 0.02]), "cash_in@momo": LaneStats([0.3])},
        replays_sent=2,
        replay_mismatches=1,
        notes=["merchant payments skipped: test"],
    )
    result.errors["replay_mismatch 201"] += 1
    text = result.render()
    internal = next(line for line in text.splitlines() if line.startswith("internal"))
    provider = next(line for line in text.splitlines() if line.startswith("provider"))
    assert internal.split()[3] == "2"  # two P2P answers, none of the provider's
    assert "300.0" in provider
    assert "1/2 same payment" in text
    assert "errors: 1" in text
    assert "note: merchant payments skipped: test" in text
