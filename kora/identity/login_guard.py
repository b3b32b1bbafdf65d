"""Brute-force protection for login: failure counters per account and per client address,
kept in the LoginThrottle port under opaque keys (keyed hashes, never a phone number or IP).

Accounts are counted by the blind index of the phone number whether or not an account
exists, so a lock says nothing about registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kora.identity.domain import AccountLocked, ThrottleRule, TooManyAttempts, register_failure
from kora.identity.domain.errors import IdentityError
from kora.identity.ports import BlindIndex, IdentitySettings, LoginThrottle, ThrottleScope
from kora.kernel import Clock


@dataclass(frozen=True, slots=True)
class ThrottleKeys:
    account: str | None
    ip: str | None


@dataclass(frozen=True, slots=True)
class NewLock:
    scope: ThrottleScope
    error: IdentityError
    seconds: int


class LoginGuard:
    def __init__(self, *, index: BlindIndex, clock: Clock, settings: IdentitySettings) -> None:
        self._index = index
        self._clock = clock
        # The failure window is the lockout duration: N failures within it lock for as long.
        lockout = timedelta(seconds=settings.login_lockout_seconds)
        self._rules: dict[ThrottleScope, ThrottleRule] = {
            "account": ThrottleRule(max_failures=settings.login_max_failures, window=lockout, lockout=lockout),
            "ip": ThrottleRule(max_failures=settings.login_ip_max_failures, window=lockout, lockout=lockout),
        }

    def keys(self, *, phone_index: bytes | None, client_ip: str | None) -> ThrottleKeys:
        return ThrottleKeys(
            account=None if phone_index is None else self._index.throttle_key("account", phone_index.hex()),
            ip=self._index.throttle_key("ip", client_ip) if client_ip else None,
        )

    async def current_lock(self, throttle: LoginThrottle, keys: ThrottleKeys) -> IdentityError | None:
        """TooManyAttempts if the address is locked, else AccountLocked if the account is."""
        now = self._clock.now()
        for scope, key in self._scoped(keys):
            state = await throttle.get(key)
            if state is not None and (retry := state.retry_after(now)) is not None:
                return _lock_error(scope, retry)
        return None

    async def count_failure(self, throttle: LoginThrottle, keys: ThrottleKeys) -> list[NewLock]:
        """Count one failure for each key; the locks this failure started, account first."""
        now = self._clock.now()
        started: list[NewLock] = []
        for scope, key in sorted(self._scoped(keys)):
            rule = self._rules[scope]
            before = await throttle.get(key, for_update=True)
            after = register_failure(before, now=now, rule=rule)
            await throttle.save(key, after, at=now)
            was_locked = before is not None and before.is_locked(now)
            if not was_locked and (retry := after.retry_after(now)) is not None:
                started.append(NewLock(scope, _lock_error(scope, retry), int(rule.lockout.total_seconds())))
        return started

    async def clear_account(self, throttle: LoginThrottle, keys: ThrottleKeys) -> None:
        """After a good password: forget the account's failures. Raises AccountLocked if
        concurrent failures locked it since the check. The address keeps its count, so one
        valid account cannot reset an attacker's budget."""
        if keys.account is None:
            return
        state = await throttle.get(keys.account, for_update=True)
        if state is not None and (retry := state.retry_after(self._clock.now())) is not None:
            raise AccountLocked(retry)
        if state is not None:
            await throttle.clear(keys.account)

    @staticmethod
    def _scoped(keys: ThrottleKeys) -> list[tuple[ThrottleScope, str]]:
        pairs: list[tuple[ThrottleScope, str | None]] = [("ip", keys.ip), ("account", keys.account)]
        return [(scope, key) for scope, key in pairs if key is not None]


def _lock_error(scope: ThrottleScope, retry_after: int) -> IdentityError:
    return AccountLocked(retry_after) if scope == "account" else TooManyAttempts(retry_after)
