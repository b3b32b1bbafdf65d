"""`assess`: the pure risk decision for one payment.

Limits first: a hard limit crossed denies, a soft one sends to review. Then the anomaly flags
add their points to a score, and the policy's thresholds turn the score into an outcome. The
decision is the most severe of all, and carries every reason (limits and flags alike), the
score and the policy version, so it can be explained and replayed.
"""

from __future__ import annotations

from collections.abc import Mapping

from kora.risk.domain.flags import anomaly_flags
from kora.risk.domain.model import Decision, Outcome, Reason, RiskContext, RiskRequest, Usage, Window
from kora.risk.domain.policy import Policy, Threshold, TypeLimits


def _device_cooling(request: RiskRequest, context: RiskContext, policy: Policy) -> bool:
    seen = context.device_first_seen
    if policy.device_cooling.hours == 0:
        return False
    return seen is None or (request.at - seen).total_seconds() < policy.device_cooling.hours * 3600


def _check(
    rule: str, threshold: Threshold, observed: int, *, window: Window | None = None, cooled: bool = False
) -> Reason | None:
    breach = threshold.breach(observed)
    if breach is None:
        return None
    outcome, limit = breach
    return Reason(
        rule=rule,
        effect=outcome.label,
        limit=limit,
        observed=observed,
        window=None if window is None else window.value,
        cooled=cooled,
    )


def _window_checks(
    rule: str,
    thresholds: Mapping[Window, Threshold],
    used: Mapping[Window, Usage],
    observe: str,
    request: RiskRequest,
    cooling: int | None,
) -> list[Reason]:
    reasons = []
    for window, threshold in thresholds.items():
        usage = used.get(window, Usage())
        observed = usage.amount + request.amount if observe == "amount" else usage.count + 1
        limit = threshold if cooling is None else threshold.scaled(cooling)
        reason = _check(rule + "." + window.value, limit, observed, window=window, cooled=cooling is not None)
        if reason is not None:
            reasons.append(reason)
    return reasons


def limit_reasons(request: RiskRequest, context: RiskContext, limits: TypeLimits, cooling: int | None) -> list[Reason]:
    """Every limit this payment would cross (amount limits scaled to `cooling` % if given)."""
    per_tx = limits.per_transaction if cooling is None else limits.per_transaction.scaled(cooling)
    reasons = [_check("limit.per_transaction", per_tx, request.amount, cooled=cooling is not None)]
    reasons += _window_checks("limit.amount", limits.amount, context.payer_usage, "amount", request, cooling)
    reasons += _window_checks("limit.count", limits.count, context.payer_usage, "count", request, None)
    reasons += _window_checks(
        "limit.per_recipient", limits.per_recipient, context.recipient_usage, "amount", request, cooling
    )
    return [reason for reason in reasons if reason is not None]


def _policy_refusal(request: RiskRequest, policy: Policy, rule: str) -> Decision:
    reason = Reason(rule=rule, effect=Outcome.DENY.label, limit=None, observed=request.amount)
    return Decision(outcome=Outcome.DENY, reasons=(reason,), score=0, policy_version=policy.version)


def assess(request: RiskRequest, context: RiskContext, policy: Policy) -> Decision:
    """Allow, review or deny `request` given what `context` says was already done, under `policy`.

    A currency the policy does not cover, or a tier it does not know, is denied
    (`policy.currency`, `policy.tier`): a payment the policy cannot judge is not let through.
    """
    if request.currency != policy.currency:
        return _policy_refusal(request, policy, "policy.currency")
    limits = policy.limits(request.tier, request.type)
    if limits is None:
        return _policy_refusal(request, policy, "policy.tier")
    cooling = policy.device_cooling.limit_percent if _device_cooling(request, context, policy) else None
    limit_hits = limit_reasons(request, context, limits, cooling)
    flags = anomaly_flags(request, context, policy, limits)
    score = sum(flag.points for flag in flags)
    outcome = max(
        [policy.score.outcome(score), *(Outcome[hit.effect.upper()] for hit in limit_hits)],
        default=Outcome.ALLOW,
    )
    return Decision(outcome=outcome, reasons=(*limit_hits, *flags), score=score, policy_version=policy.version)
