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

    async def reserve_attempt(self, throttle: LoginThrottle, keys: ThrottleKeys) -> list[NewLock]:
        """Count this attempt against the account *before* the password is checked, under the
        row lock: a burst of parallel guesses cannot all pass the lock check. A good password
        clears the count afterwards (`clear_account`). Returns the lock this attempt started."""
        if keys.account is None:
            return []
        now = self._clock.now()
        rule = self._rules["account"]
        before = await throttle.lock(keys.account, at=now)
        if (retry := before.retry_after(now)) is not None:
            raise AccountLocked(retry)
        after = register_failure(before, now=now, rule=rule)
        await throttle.save(keys.account, after, at=now)
        if (retry := after.retry_after(now)) is not None:
            return [NewLock("account", _lock_error("account", retry), int(rule.lockout.total_seconds()))]
        return []

    async def count_failure(
        self, throttle: LoginThrottle, keys: ThrottleKeys, *, account_reserved: bool = False
    ) -> list[NewLock]:
        """Count one failure for each key (not the account's if `reserve_attempt` already did);
        the locks this failure started, account first."""
        now = self._clock.now()
        started: list[NewLock] = []
        scoped = [(scope, key) for scope, key in self._scoped(keys) if not (account_reserved and scope == "account")]
        for scope, key in sorted(scoped):
            rule = self._rules[scope]
            before = await throttle.get(key, for_update=True)
            after = register_failure(before, now=now, rule=rule)
            await throttle.save(key, after, at=now)
            was_locked = before is not None and before.is_locked(now)
            if not was_locked and (retry := after.retry_after(now)) is not None:
                started.append(NewLock(scope, _lock_error(scope, retry), int(rule.lockout.total_seconds())))
        return started

    async def clear_account(self, throttle: LoginThrottle, keys: ThrottleKeys) -> None:
        """After a good password: forget the account's failures (including this attempt's own
        reservation, which may have been the one that reached the limit: the owner proved
        the password). The address keeps its count, so one valid account cannot reset an
        attacker's budget."""
        if keys.account is None:
            return
        await throttle.clear(keys.account)

    @staticmethod
    def _scoped(keys: ThrottleKeys) -> list[tuple[ThrottleScope, str]]:
        pairs: list[tuple[ThrottleScope, str | None]] = [("ip", keys.ip), ("account", keys.account)]
        return [(scope, key) for scope, key in pairs if key is not None]


def _lock_error(scope: ThrottleScope, retry_after: int) -> IdentityError:
    return AccountLocked(retry_after) if scope == "account" else TooManyAttempts(retry_after)
