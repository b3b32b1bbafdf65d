"""Precision and recall on the simulator's ground truth: every injected discrepancy is found
with the right outcome and reason, and nothing else is flagged (100 % / 100 % per outcome).

Each case plays one operation through the simulator's engine with one injected scenario, and
says what Kora's view of it would be (None: Kora does not know the payment) and which
(outcome, reason) results reconciliation must produce for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kora.reconciliation import InternalTxn, MatchResult, Outcome, Reason, load_dialect, match, parse_report
from kora.simulator.behaviour import Scenario
from kora.simulator.config import ApiStyle
from kora.simulator.records import Operation
from kora.simulator.reports import manifest, render_report
from tests.unit.reconciliation.factories import AS_OF, DAY, Simulation, kora_view, refund_view

M = (Outcome.MATCHED, None)
MISSING_INTERNAL = (Outcome.MISSING_INTERNAL, None)
MISSING_PROVIDER = (Outcome.MISSING_PROVIDER, None)
STATUS = (Outcome.MISMATCH, Reason.STATUS)
DUPLICATE = (Outcome.MISMATCH, Reason.DUPLICATE)
Expected = tuple[tuple[Outcome, Reason | None], ...]


@dataclass(frozen=True, slots=True)
class Case:
    kind: str
    scenario: Scenario
    kora: str | None
    expected: Expected
    refund: int = 0


def mobile_cases(cash_in: str, cash_out: str, *, reports_failures: bool) -> list[Case]:
    failed: Expected = (M,) if reports_failures else ()
    return [
        Case(cash_in, Scenario.SUCCEED, "CAPTURED", (M,)),
        Case(cash_out, Scenario.SUCCEED, "CAPTURED", (M,)),
        Case(cash_in, Scenario.SUCCEED, "SETTLED", (M,)),
        Case(cash_in, Scenario.DECLINE, "FAILED", failed),
        Case(cash_out, Scenario.TIMEOUT, "FAILED", failed),
        Case(cash_in, Scenario.TIMEOUT_UNRECORDED, "INITIATED", ()),
        Case(cash_in, Scenario.LATE_SUCCESS, "INITIATED", (MISSING_INTERNAL,)),
        Case(cash_in, Scenario.LATE_SUCCESS, "FAILED", (STATUS,)),
        Case(cash_out, Scenario.LATE_SUCCESS, None, (MISSING_INTERNAL,)),
        Case(cash_in, Scenario.LOST_CALLBACK, "CAPTURED", (M,)),
        Case(cash_out, Scenario.LOST_CALLBACK, "INITIATED", (MISSING_INTERNAL,)),
        Case(cash_in, Scenario.DUPLICATE_CALLBACK, "CAPTURED", (M,)),
        Case(cash_in, Scenario.STUCK_PENDING, "INITIATED", ()),
        Case(cash_in, Scenario.REVERSAL, "CAPTURED", (M, STATUS)),
        Case(cash_out, Scenario.REVERSAL, "REVERSED", (M, M)),
        Case(cash_in, Scenario.OMITTED_FROM_REPORT, "CAPTURED", (MISSING_PROVIDER,)),
        Case(cash_out, Scenario.DUPLICATED_IN_REPORT, "CAPTURED", (M, DUPLICATE)),
    ]


CASES: dict[str, list[Case]] = {
    "momo": mobile_cases("collection", "disbursement", reports_failures=True),
    "wave": mobile_cases("checkout", "payout", reports_failures=False),
    "card": [
        Case("authorization", Scenario.SUCCEED, "CAPTURED", (M,)),
        Case("authorization", Scenario.SUCCEED, "CAPTURED", (M, M), refund=700),
        Case("authorization", Scenario.DECLINE, "FAILED", ()),
        Case("authorization", Scenario.CHARGEBACK, "CAPTURED", (M, STATUS)),
        Case("authorization", Scenario.CHARGEBACK, "CHARGED_BACK", (M, M)),
        Case("authorization", Scenario.OMITTED_FROM_REPORT, "CAPTURED", (MISSING_PROVIDER,)),
        Case("authorization", Scenario.DUPLICATED_IN_REPORT, "CAPTURED", (M, DUPLICATE)),
    ],
}
STYLES = {"momo": ApiStyle.MOMO, "wave": ApiStyle.WAVE, "card": ApiStyle.CARD}
Key = tuple[str, Outcome, Reason | None]


@dataclass(slots=True)
class Run:
    expected: Counter[Key]
    found: Counter[Key]
    manifest: dict[str, object]
    operations: list[Operation]


def play(provider: str, cases: Sequence[Case], amounts: Sequence[int]) -> Run:
    """Play ``cases``, render the day's report, build Kora's view, parse and match."""
    sim = Simulation()
    expected: Counter[Key] = Counter()
    internal: list[InternalTxn] = []
    payment_of: dict[str, str] = {}  # Kora payment id -> operation id
    operations: list[Operation] = []
    for case, amount in zip(cases, amounts, strict=True):
        if provider == "card":
            operation = sim.card(amount, case.scenario, refund=min(case.refund, amount))
        else:
            currency = "GHS" if amount % 3 == 0 else "XOF"
            operation = sim.mobile(provider, case.kind, amount, case.scenario, currency=currency)
        operations.append(operation)
        expected.update((operation.id, outcome, reason) for outcome, reason in case.expected)
        if case.kora is not None:
            view = kora_view(operation, case.kora)
            internal.append(view)
            payment_of[view.payment_id] = operation.id
        if case.refund:
            refund = refund_view(operation)
            internal.append(refund)
            payment_of[refund.payment_id] = operation.id
    recorded = sim.state.ledger.of_provider(provider)
    data = render_report(STYLES[provider], recorded, DAY).encode()
    report = parse_report(load_dialect(provider), data)
    assert report.quarantined == []
    results = match(report.lines, internal, rules=sim.rules(provider), as_of=AS_OF)
    by_reference = {op.external_id: op.id for op in operations}
    found = Counter(
        _key(result, payment_of, by_reference) for result in results if result.outcome is not Outcome.PENDING
    )
    truth = manifest(provider, STYLES[provider], recorded, DAY, sim.state.ledger.unrecorded)
    return Run(expected, found, truth, operations)


def _key(result: MatchResult, payment_of: dict[str, str], by_reference: dict[str | None, str]) -> Key:
    if result.internal is not None:
        operation_id = payment_of[result.internal.payment_id]
    else:
        assert result.line is not None
        operation_id = by_reference[result.line.our_reference]
    return (operation_id, result.outcome, result.reason)


def per_outcome(expected: Counter[Key], found: Counter[Key]) -> dict[str, tuple[int, int, int]]:
    """(expected, found, true positives) per outcome and reason."""
    labels = {(o, r) for _, o, r in expected} | {(o, r) for _, o, r in found}
    table: dict[str, tuple[int, int, int]] = {}
    for outcome, reason in sorted(labels, key=str):
        e = Counter({k: n for k, n in expected.items() if k[1:] == (outcome, reason)})
        f = Counter({k: n for k, n in found.items() if k[1:] == (outcome, reason)})
        label = f"{outcome}" + (f"/{reason}" if reason else "")
        table[label] = (e.total(), f.total(), (e & f).total())
    return table


def test_precision_and_recall_are_total_on_the_simulators_ground_truth() -> None:
    for provider, cases in CASES.items():
        amounts = [1_000 + 137 * index for index in range(len(cases))]
        run = play(provider, cases, amounts)
        print(f"\n{provider}: outcome: expected / found / correct  (precision, recall)")
        for label, (expected, found, correct) in per_outcome(run.expected, run.found).items():
            print(
                f"  {label:28} {expected:3} / {found:3} / {correct:3}  ({correct / max(found, 1):.0%}, {correct / max(expected, 1):.0%})"
            )
            assert correct == expected == found, (provider, label)
        assert run.found == run.expected
        _every_injection_is_accounted_for(provider, run)


def _every_injection_is_accounted_for(provider: str, run: Run) -> None:
    """The manifest's injected discrepancies are exactly the cases' flagged ones."""
    operation_of_line = {m.line_id: op.id for op in run.operations for m in op.movements}
    omitted = {operation_of_line[line_id] for line_id in run.manifest["omitted_lines"]}  # type: ignore[attr-defined]
    duplicated = {operation_of_line[line_id] for line_id in run.manifest["duplicated_lines"]}  # type: ignore[attr-defined]
    assert omitted == {op for op, outcome, _ in run.expected if outcome is Outcome.MISSING_PROVIDER}
    assert duplicated == {op for op, _, reason in run.expected if reason is Reason.DUPLICATE}
    injected: dict[str, list[dict[str, object]]] = run.manifest["injected"]  # type: ignore[assignment]
    late = {item["operation_id"] for item in injected.get("late_success", [])}
    flagged = {op for op, outcome, reason in run.expected if outcome is not Outcome.MATCHED}
    assert late <= flagged  # every late success is flagged in these cases (Kora never saw it succeed)
    if provider == "card":
        charged = {item["operation_id"] for item in injected["chargeback"]}
        assert any(op in flagged for op in charged)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mix_of_scenarios_is_reconciled_exactly(data: st.DataObject) -> None:
    provider = data.draw(st.sampled_from(sorted(CASES)))
    cases = data.draw(st.lists(st.sampled_from(CASES[provider]), min_size=1, max_size=12))
    amounts = data.draw(st.lists(st.integers(100, 5_000_000), min_size=len(cases), max_size=len(cases)))
    run = play(provider, cases, amounts)
    assert run.found == run.expected
