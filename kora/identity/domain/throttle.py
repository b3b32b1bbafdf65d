"""Login throttling: count failures in a fixed window and lock for a while once the count
reaches the limit. Pure: the caller gives the time (from its Clock) and stores the state."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    max_failures: int
    window: timedelta
    lockout: timedelta

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window <= timedelta(0) or self.lockout <= timedelta(0):
            raise ValueError("throttle rule needs max_failures >= 1 and positive durations")


@dataclass(frozen=True, slots=True)
class ThrottleState:
    failures: int
    window_started_at: datetime
    locked_until: datetime | None = None

    def retry_after(self, now: datetime) -> int | None:
        """Seconds left of an active lock, or None when not locked."""
        if self.locked_until is None or now >= self.locked_until:
            return None
        return max(1, math.ceil((self.locked_until - now).total_seconds()))

    def is_locked(self, now: datetime) -> bool:
        return self.retry_after(now) is not None


def register_failure(state: ThrottleState | None, *, now: datetime, rule: ThrottleRule) -> ThrottleState:
    """The state after one more failure. Reaching `max_failures` within `window` locks for
    `lockout` and restarts the count, so the next failure after the lock counts from one."""
    if state is not None and state.is_locked(now):
        return state
    if state is None or state.locked_until is not None or now - state.window_started_at >= rule.window:
        state = ThrottleState(failures=0, window_started_at=now)
    failures = state.failures + 1
    if failures >= rule.max_failures:
        return ThrottleState(failures=0, window_started_at=now, locked_until=now + rule.lockout)
    return replace(state, failures=failures)
