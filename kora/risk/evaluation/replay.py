"""Replay a labelled dataset through `assess` and measure precision and recall per pattern.

The payments are replayed in time order; each one's context comes from the replayed history
(an `InMemoryRiskActivity`), its decision is taken, and the payment is recorded unless denied.

Definitions (written in docs/risk-evaluation.md):
- a payment is *flagged for a pattern* when its decision is review or deny and the pattern's
  rule is among its reasons (`limit_breach` matches any `limit.*` rule);
- an injected instance is *caught* when at least one of its payments is flagged for its pattern;
  recall = caught instances / injected instances;
- precision = flagged payments labelled with the pattern / all payments flagged for it;
- false-positive rate = normal payments reviewed or denied / normal payments.
Payments before the warm-up's end build history only and are not counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from kora.risk.adapters.memory import InMemoryRiskActivity
from kora.risk.domain.assessment import assess
from kora.risk.domain.model import Decision, Outcome
from kora.risk.domain.policy import Policy
from kora.risk.evaluation.dataset import PATTERNS, Dataset

PATTERN_RULES = {pattern: f"flag.{pattern}" for pattern in PATTERNS if pattern != "limit_breach"} | {
    "limit_breach": "limit."
}


def flagged_for(decision: Decision, pattern: str) -> bool:
    if decision.outcome is Outcome.ALLOW:
        return False
    rule = PATTERN_RULES[pattern]
    return any(r.rule.startswith(rule) if rule.endswith(".") else r.rule == rule for r in decision.reasons)


@dataclass(frozen=True, slots=True)
class PatternResult:
    pattern: str
    instances: int
    caught: int
    flagged: int
    true_flags: int

    @property
    def recall(self) -> float:
        return self.caught / self.instances if self.instances else 1.0

    @property
    def precision(self) -> float:
        return self.true_flags / self.flagged if self.flagged else 0.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    policy_version: str
    payments: int
    outcomes: Counter[str]
    patterns: tuple[PatternResult, ...]
    normal: int
    normal_flagged: int
    normal_rules: Counter[str] = field(default_factory=Counter)

    @property
    def false_positive_rate(self) -> float:
        return self.normal_flagged / self.normal if self.normal else 0.0

    @property
    def all_caught(self) -> bool:
        return all(p.caught == p.instances for p in self.patterns)

    def render(self) -> str:
        lines = [
            f"policy {self.policy_version}: {self.payments} payments scored "
            f"(allow {self.outcomes['allow']}, review {self.outcomes['review']}, deny {self.outcomes['deny']})",
            "",
            f"{'pattern':<27} {'instances':>9} {'caught':>6} {'recall':>7} {'flagged':>7} {'true':>5} {'precision':>9}",
        ]
        for p in self.patterns:
            lines.append(
                f"{p.pattern:<27} {p.instances:>9} {p.caught:>6} {p.recall:>7.1%} {p.flagged:>7} "
                f"{p.true_flags:>5} {p.precision:>9.1%}"
            )
        lines += [
            "",
            f"normal payments: {self.normal}, reviewed or denied: {self.normal_flagged} "
            f"(false-positive rate {self.false_positive_rate:.2%})",
        ]
        if self.normal_rules:
            top = ", ".join(f"{rule} {n}" for rule, n in self.normal_rules.most_common())
            lines.append(f"rules behind them: {top}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "policy_version": self.policy_version,
            "payments": self.payments,
            "outcomes": dict(self.outcomes),
            "patterns": {
                p.pattern: {
                    "instances": p.instances,
                    "caught": p.caught,
                    "recall": p.recall,
                    "flagged": p.flagged,
                    "true": p.true_flags,
                    "precision": p.precision,
                }
                for p in self.patterns
            },
            "normal": self.normal,
            "normal_flagged": self.normal_flagged,
            "false_positive_rate": self.false_positive_rate,
            "normal_rules": dict(self.normal_rules),
        }


def evaluate(dataset: Dataset, policy: Policy) -> Evaluation:
    """Replay `dataset` under `policy` and measure it (see the module docstring)."""
    activity = InMemoryRiskActivity()
    outcomes: Counter[str] = Counter()
    instances: dict[str, set[str]] = defaultdict(set)
    caught: dict[str, set[str]] = defaultdict(set)
    flagged: Counter[str] = Counter()
    true_flags: Counter[str] = Counter()
    normal = normal_flagged = 0
    normal_rules: Counter[str] = Counter()
    for payment in dataset.payments:
        request = payment.request
        decision = assess(request, activity.build(request, policy), policy)
        activity.record(request, decision.outcome)
        if request.at < dataset.warmup_until:
            continue
        outcomes[decision.outcome.label] += 1
        if payment.label is None:
            normal += 1
            if decision.outcome is not Outcome.ALLOW:
                normal_flagged += 1
                normal_rules.update(decision.rules)
        else:
            instances[payment.label].add(payment.instance or "")
        for pattern in PATTERNS:
            if flagged_for(decision, pattern):
                flagged[pattern] += 1
                if payment.label == pattern:
                    true_flags[pattern] += 1
                    caught[pattern].add(payment.instance or "")
    results = tuple(
        PatternResult(
            pattern=pattern,
            instances=len(instances[pattern]),
            caught=len(caught[pattern]),
            flagged=flagged[pattern],
            true_flags=true_flags[pattern],
        )
        for pattern in PATTERNS
    )
    return Evaluation(
        policy_version=policy.version,
        payments=sum(outcomes.values()),
        outcomes=outcomes,
        patterns=results,
        normal=normal,
        normal_flagged=normal_flagged,
        normal_rules=normal_rules,
    )
