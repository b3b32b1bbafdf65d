"""Identity use cases: register, log in, refresh, log out, authenticate.

Each use case owns its unit of work. Slow password hashing never runs inside an open
transaction: a login reads what it needs, closes the transaction, verifies the password off
the event loop, then opens a second short transaction to record the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol

from kora.audit.ports import AuditEvent
from kora.identity.domain import (
    AccountLocked,
    AuthSession,
    DeviceMismatch,
    IdentityError,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    PasswordPolicy,
    PhoneNumber,
    PhoneNumberTaken,
    Principal,
    RefreshTokenReused,
    Registration,
    Role,
    TokenPair,
    UserNotFound,
    UserProfile,
    UserRecord,
    normalize_password,
    validate_device_id,
    validate_display_name,
)
from kora.identity.login_guard import LoginGuard, NewLock, ThrottleKeys
from kora.identity.ports import (
    BlindIndex,
    IdentitySettings,
    IdentityUnitOfWork,
    PasswordHasher,
    PhoneNormalizer,
    PiiCipher,
    TokenSigner,
)
from kora.identity.replay import ReplayGuard
from kora.identity.tokens import TokenIssuer, hash_refresh_token
from kora.kernel import Clock, new_id
from kora.kernel.money import DEFAULT_CURRENCY

ANONYMOUS = "anonymous"
SYSTEM = "system"
# Tokens are issued and checked by our own clocks; this only absorbs skew between replicas.
_ISSUED_AT_LEEWAY = timedelta(seconds=30)


GRANTABLE_ROLES = frozenset(
    {Role.MERCHANT, Role.RECON_REVIEWER, Role.RECON_APPROVER, Role.RISK_ANALYST, Role.LEADERSHIP}
)


def _may_hold(roles: frozenset[Role], role: Role) -> bool:
    """A merchant is a customer; the other grantable roles (reconciliation, risk, leadership) are
    for staff, never a customer."""
    if role is Role.MERCHANT:
        return Role.CUSTOMER in roles
    return Role.CUSTOMER not in roles and any(held.is_staff for held in roles)


def _actor(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def _phone_context(user_id: uuid.UUID) -> str:
    return f"users.phone:{user_id}"


def _display_name_context(user_id: uuid.UUID) -> str:
    return f"users.display_name:{user_id}"


class AuthMetrics(Protocol):
    """Where identity counts failed authentications and the lockouts they start (no PII:
    reasons and scopes only)."""

    def auth_failure(self, reason: str) -> None: ...

    def lockout(self, scope: str) -> None: ...


class _NoAuthMetrics:
    def auth_failure(self, reason: str) -> None:
        pass

    def lockout(self, scope: str) -> None:
        pass


class IdentityService:
    """Identity's use cases. Build it in the composition root:
    `IdentityService(uow_factory=..., clock=..., settings=..., **build_identity_adapters(settings))`."""

    def __init__(
        self,
        *,
        uow_factory: Callable[[], IdentityUnitOfWork],
        hasher: PasswordHasher,
        signer: TokenSigner,
        cipher: PiiCipher,
        index: BlindIndex,
        phones: PhoneNormalizer,
        clock: Clock,
        settings: IdentitySettings,
        policy: PasswordPolicy,
        wallet_currency: str = DEFAULT_CURRENCY,
        metrics: AuthMetrics | None = None,
    ) -> None:
        self._metrics: AuthMetrics = metrics or _NoAuthMetrics()
        self._uow = uow_factory
        self._hasher = hasher
        self._signer = signer
        self._cipher = cipher
        self._index = index
        self._phones = phones
        self._clock = clock
        self._policy = policy
        self._wallet_currency = wallet_currency
        self._tokens = TokenIssuer(signer=signer, settings=settings)
        self._guard = LoginGuard(index=index, clock=clock, settings=settings)
        self._replay = ReplayGuard(uow_factory=uow_factory, clock=clock, settings=settings)
        # Sessions recently seen active, until when: spares a database read per request.
        # Revocation in this process is immediate (the entry is dropped); other processes see
        # it within `session_check_seconds`.
        self._session_check = timedelta(seconds=settings.session_check_seconds)
        self._active_sessions: dict[uuid.UUID, datetime] = {}

    # -- registration -------------------------------------------------------------------

    async def register(
        self,
        *,
        phone_number: str,
        password: str,
        display_name: str | None = None,
        correlation_id: str | None = None,
    ) -> Registration:
        """Create a customer and open their wallet in one transaction.

        Raises InvalidPhoneNumber, InvalidDisplayName, WeakPassword, PhoneNumberTaken.
        """
        user = await self._new_user(phone_number, password, display_name, frozenset({Role.CUSTOMER}))
        async with self._uow() as uow:
            await self._add_user(uow, user)
            wallet_id = await uow.wallets.open_wallet(user.id, self._wallet_currency)
            await uow.audit.record(
                actor=_actor(user.id),
                action="auth.registered",
                subject=_actor(user.id),
                correlation_id=correlation_id,
                details={"wallet_id": str(wallet_id)},
            )
            await uow.commit()
        return Registration(user_id=user.id, wallet_id=wallet_id)

    async def create_admin(self, phone_number: str, password: str, *, correlation_id: str | None = None) -> uuid.UUID:
        """Create an administrator (no wallet). For the CLI only: no API route calls this."""
        return await self.create_staff(phone_number, password, Role.ADMIN, correlation_id=correlation_id)

    async def create_staff(
        self,
        phone_number: str,
        password: str,
        role: Role,
        *,
        display_name: str | None = None,
        correlation_id: str | None = None,
    ) -> uuid.UUID:
        """Create a staff account (support, admin, recon_reviewer, recon_approver,
        risk_analyst or leadership; no wallet). For the CLI only."""
        if not role.is_staff:
            raise ValueError(
                "staff roles are support, admin, recon_reviewer, recon_approver, risk_analyst and leadership"
            )
        user = await self._new_user(phone_number, password, display_name, frozenset({role}))
        async with self._uow() as uow:
            await self._add_user(uow, user)
            await uow.audit.record(
                actor=SYSTEM,
                action="auth.staff.created",
                subject=_actor(user.id),
                correlation_id=correlation_id,
                details={"role": role.value},
            )
            await uow.commit()
        return user.id

    async def grant_role(
        self, user_id: uuid.UUID, role: Role, *, actor: str, correlation_id: str | None = None
    ) -> bool:
        """Grant a customer the merchant role, or a staff member a reconciliation, risk or
        leadership role (recon_reviewer, recon_approver, risk_analyst, leadership): the only roles
        granted this way (staff accounts are made by the CLI, customers register). Audited; False
        when the user already held it. It shows in the access tokens issued after (the next login
        or refresh). Raises UserNotFound when `user_id` is not a customer (merchant) or not staff
        (the other roles)."""
        if role not in GRANTABLE_ROLES:
            raise ValueError(
                "only merchant, recon_reviewer, recon_approver, risk_analyst and leadership "
                "are granted to an existing user"
            )
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None or not _may_hold(user.roles, role):
                raise UserNotFound()
            granted = await uow.users.grant_role(user_id, role, at=self._clock.now())
            if granted:
                await uow.audit.record(
                    actor=actor,
                    action="auth.role.granted",
                    subject=_actor(user_id),
                    correlation_id=correlation_id,
                    details={"role": role.value},
                )
            await uow.commit()
        return granted

    async def _new_user(
        self, phone_number: str, password: str, display_name: str | None, roles: frozenset[Role]
    ) -> UserRecord:
        phone = self._phones.normalize(phone_number)
        name = validate_display_name(display_name)
        password = normalize_password(password)
        self._policy.check(password, phone=phone)
        user_id = new_id()
        return UserRecord(
            id=user_id,
            phone_index=self._index.phone(phone.e164),
            phone_ciphertext=self._cipher.encrypt(phone.e164, context=_phone_context(user_id)),
            display_name_ciphertext=(
                None if name is None else self._cipher.encrypt(name, context=_display_name_context(user_id))
            ),
            password_hash=await self._hasher.hash(password),
            roles=roles,
            created_at=self._clock.now(),
        )

    @staticmethod
    async def _add_user(uow: IdentityUnitOfWork, user: UserRecord) -> None:
        if await uow.users.get_by_phone_index(user.phone_index) is not None:
            raise PhoneNumberTaken()
        await uow.users.add(user)  # the unique index is the backstop against a concurrent twin

    # -- login ---------------------------------------------------------------------------

    async def login(
        self,
        *,
        phone_number: str,
        password: str,
        device_id: str,
        client_ip: str | None,
        correlation_id: str | None = None,
    ) -> TokenPair:
        """Exchange credentials for an access token and a refresh token (a new session).

        Raises InvalidCredentials (unknown number and wrong password alike), AccountLocked,
        TooManyAttempts, InvalidDeviceId.
        """
        device_id = validate_device_id(device_id)
        phone = self._normalize_or_none(phone_number)
        phone_index = None if phone is None else self._index.phone(phone.e164)
        keys = self._guard.keys(phone_index=phone_index, client_ip=client_ip)

        reservation_locks: list[NewLock] = []
        async with self._uow() as uow:
            lock = await self._guard.current_lock(uow.throttle, keys)
            if lock is None:
                try:
                    reservation_locks = await self._guard.reserve_attempt(uow.throttle, keys)
                except AccountLocked as exc:  # locked by a concurrent attempt meanwhile
                    lock = exc
            if lock is not None:
                await self._audit_login_failure(uow, None, lock.code, "denied", correlation_id)
                await uow.commit()
                self._metrics.auth_failure(lock.code)
                raise lock
            user = None if phone_index is None else await uow.users.get_by_phone_index(phone_index)
            await uow.commit()  # the attempt is counted before the password is checked

        password = normalize_password(password)
        if user is not None and len(password) <= self._policy.max_length:
            verified = await self._hasher.verify(user.password_hash, password)
        else:
            verified = False
            await self._hasher.verify_dummy(password[: self._policy.max_length])
        if user is None or not verified:
            self._metrics.auth_failure(InvalidCredentials.code)
            await self._record_failure(user, keys, _failure_reason(phone, user), correlation_id, reservation_locks)
            raise InvalidCredentials()

        new_hash = await self._hasher.hash(password) if self._hasher.needs_rehash(user.password_hash) else None
        now = self._clock.now()
        async with self._uow() as uow:
            await self._guard.clear_account(uow.throttle, keys)
            if new_hash is not None:
                await uow.users.update_password_hash(user.id, new_hash, at=now)
            session = AuthSession(id=new_id(), user_id=user.id, device_id=device_id, created_at=now)
            await uow.refresh_tokens.open_session(session)
            refresh_token = await self._tokens.add_refresh_token(uow.refresh_tokens, session.id, now)
            await uow.audit.record(
                actor=_actor(user.id),
                action="auth.login.succeeded",
                subject=_actor(user.id),
                correlation_id=correlation_id,
                details={"session_id": str(session.id), "password_rehashed": new_hash is not None},
            )
            await uow.commit()
        return self._tokens.token_pair(user, session, refresh_token, now)

    def _normalize_or_none(self, phone_number: str) -> PhoneNumber | None:
        try:
            return self._phones.normalize(phone_number)
        except IdentityError:
            return None

    async def _record_failure(
        self,
        user: UserRecord | None,
        keys: ThrottleKeys,
        reason: str,
        correlation_id: str | None,
        reservation_locks: list[NewLock],
    ) -> None:
        """Count the failure (the account's was counted when the attempt was reserved), audit
        it and any lock it started, commit, and raise the lock error if this failure started
        one. Throttle rows are locked before the audit chains (one lock order everywhere)."""
        subject = ANONYMOUS if user is None else _actor(user.id)
        async with self._uow() as uow:
            new_locks = reservation_locks + await self._guard.count_failure(uow.throttle, keys, account_reserved=True)
            events = [
                AuditEvent(
                    actor=ANONYMOUS,
                    action="auth.login.failed",
                    subject=subject,
                    correlation_id=correlation_id,
                    outcome="failure",
                    details={"reason": reason},
                )
            ]
            events += [
                AuditEvent(
                    actor=ANONYMOUS,
                    action="auth.locked",
                    subject=subject if lock.scope == "account" else ANONYMOUS,
                    correlation_id=correlation_id,
                    outcome="denied",
                    details={"scope": lock.scope, "locked_seconds": lock.seconds},
                )
                for lock in new_locks
            ]
            await uow.audit.record_many(events)
            await uow.commit()
        for lock in new_locks:
            self._metrics.lockout(lock.scope)
        if new_locks:
            raise new_locks[0].error

    @staticmethod
    async def _audit_login_failure(
        uow: IdentityUnitOfWork,
        user: UserRecord | None,
        reason: str,
        outcome: str,
        correlation_id: str | None,
    ) -> None:
        await uow.audit.record(
            actor=ANONYMOUS,
            action="auth.login.failed",
            subject=ANONYMOUS if user is None else _actor(user.id),
            correlation_id=correlation_id,
            outcome=outcome,
            details={"reason": reason},
        )

    # -- refresh, logout, authenticate ------------------------------------------------------

    async def refresh(self, *, refresh_token: str, device_id: str, correlation_id: str | None = None) -> TokenPair:
        """Rotate a refresh token: the presented one is spent, a new one of the same session
        is returned with a new access token.

        Raises RefreshTokenReused (and revokes the whole session) when the token was already
        used; InvalidRefreshToken when it is unknown, expired, revoked or from another device.
        """
        try:
            return await self._refresh(refresh_token, device_id, correlation_id)
        except IdentityError as exc:
            self._metrics.auth_failure(exc.code)
            raise

    async def _refresh(self, refresh_token: str, device_id: str, correlation_id: str | None) -> TokenPair:
        token_hash = hash_refresh_token(refresh_token)
        now = self._clock.now()
        async with self._uow() as uow:
            token = await uow.refresh_tokens.get(token_hash)
            if token is None:
                raise InvalidRefreshToken()
            session = await uow.refresh_tokens.get_session(token.session_id)
            if session is None:
                raise InvalidRefreshToken()
            if token.used_at is not None:
                await self._revoke_for_reuse(uow, session, now, correlation_id)
            if session.is_revoked or token.revoked_at is not None or token.expires_at <= now:
                raise InvalidRefreshToken()
            if session.device_id != device_id:
                raise InvalidRefreshToken()
            user = await uow.users.get(session.user_id)
            if user is None:
                raise InvalidRefreshToken()
            if not await uow.refresh_tokens.mark_used(token_hash, at=now):
                await self._revoke_for_reuse(uow, session, now, correlation_id)
            new_token = await self._tokens.add_refresh_token(uow.refresh_tokens, session.id, now)
            await uow.audit.record(
                actor=_actor(user.id),
                action="auth.token.refreshed",
                subject=_actor(user.id),
                correlation_id=correlation_id,
                details={"session_id": str(session.id)},
            )
            await uow.commit()
        return self._tokens.token_pair(user, session, new_token, now)

    async def _revoke_for_reuse(
        self, uow: IdentityUnitOfWork, session: AuthSession, now: datetime, correlation_id: str | None
    ) -> NoReturn:
        """A spent token came back: someone holds a copy. Kill the session (once), then raise."""
        self._active_sessions.pop(session.id, None)
        if session.is_revoked:
            raise RefreshTokenReused()
        await uow.refresh_tokens.revoke_session(session.id, at=now, reason="refresh_token_reused")
        await uow.audit.record(
            actor=ANONYMOUS,
            action="auth.refresh.reuse_detected",
            subject=_actor(session.user_id),
            correlation_id=correlation_id,
            outcome="denied",
            details={"session_id": str(session.id)},
        )
        await uow.commit()
        raise RefreshTokenReused()

    async def logout(self, principal: Principal, correlation_id: str | None = None) -> None:
        """Revoke the caller's session: its refresh tokens stop working at once, and so do its
        access tokens (authenticate checks the session)."""
        async with self._uow() as uow:
            self._active_sessions.pop(principal.session_id, None)
            await uow.refresh_tokens.revoke_session(principal.session_id, at=self._clock.now(), reason="logout")
            await uow.audit.record(
                actor=principal.actor,
                action="auth.logout",
                subject=principal.actor,
                correlation_id=correlation_id,
                details={"session_id": str(principal.session_id)},
            )
            await uow.commit()

    async def authenticate(self, access_token: str, device_id: str) -> Principal:
        """The principal of a valid access token presented by the device it was issued to.

        Raises InvalidToken (bad signature, unknown kid, wrong issuer/audience, expired,
        session revoked) or DeviceMismatch. Costs one primary-key read of the session.
        """
        try:
            return await self._authenticate(access_token, device_id)
        except IdentityError as exc:
            self._metrics.auth_failure(exc.code)
            raise

    async def _authenticate(self, access_token: str, device_id: str) -> Principal:
        claims = self._signer.verify(access_token)
        now = self._clock.now()
        if claims.expires_at <= now or claims.issued_at > now + _ISSUED_AT_LEEWAY:
            raise InvalidToken()
        if claims.device_id != device_id:
            raise DeviceMismatch()
        if self._active_sessions.get(claims.session_id, now) <= now:
            async with self._uow() as uow:
                session = await uow.refresh_tokens.get_session(claims.session_id)
            if session is None or session.is_revoked or session.user_id != claims.user_id:
                self._active_sessions.pop(claims.session_id, None)
                raise InvalidToken()
            if self._session_check:
                if len(self._active_sessions) > 100_000:
                    self._active_sessions.clear()
                self._active_sessions[claims.session_id] = now + self._session_check
        return Principal(
            user_id=claims.user_id,
            roles=claims.roles,
            device_id=claims.device_id,
            session_id=claims.session_id,
        )

    # -- anti-replay (ADR 0012) ------------------------------------------------------------

    async def consume_request_nonce(
        self,
        principal: Principal,
        *,
        nonce: str | None,
        timestamp: str | None,
        correlation_id: str | None = None,
    ) -> None:
        """Accept a sensitive request's X-Request-Nonce and X-Request-Timestamp (raw header
        values) once per session. Raises a ReplayRefused: RequestTimestampMissing,
        RequestTimestampInvalid, RequestNonceMissing, RequestNonceInvalid, RequestStale,
        RequestReplayed."""
        await self._replay.consume(principal, nonce=nonce, timestamp=timestamp, correlation_id=correlation_id)

    async def purge_request_nonces(self) -> int:
        """Delete nonces too old to matter (their timestamps would be refused anyway)."""
        return await self._replay.purge()

    # -- lookups ---------------------------------------------------------------------------

    async def resolve_user_by_phone(self, phone_number: str) -> uuid.UUID | None:
        """The id of the customer with this phone number, or None (staff accounts are not
        payees). Raises InvalidPhoneNumber for something that is not a phone number."""
        phone = self._phones.normalize(phone_number)
        async with self._uow() as uow:
            user = await uow.users.get_by_phone_index(self._index.phone(phone.e164))
        if user is None or Role.CUSTOMER not in user.roles:
            return None
        return user.id

    async def resolve_staff_by_phone(self, phone_number: str) -> uuid.UUID | None:
        """The id of the staff member (support, admin, reconciliation) with this phone number,
        or None. For the CLI. Raises InvalidPhoneNumber."""
        phone = self._phones.normalize(phone_number)
        async with self._uow() as uow:
            user = await uow.users.get_by_phone_index(self._index.phone(phone.e164))
        if user is None or not any(role.is_staff for role in user.roles):
            return None
        return user.id

    async def profile(self, user_id: uuid.UUID) -> UserProfile:
        """The decrypted profile of a user. Raises UserNotFound."""
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise UserNotFound()
        name = user.display_name_ciphertext
        return UserProfile(
            user_id=user.id,
            phone_number=self._cipher.decrypt(user.phone_ciphertext, context=_phone_context(user.id)),
            display_name=None if name is None else self._cipher.decrypt(name, context=_display_name_context(user.id)),
            roles=user.roles,
            created_at=user.created_at,
        )

    def jwks(self) -> dict[str, Any]:
        return self._signer.jwks()


def _failure_reason(phone: PhoneNumber | None, user: UserRecord | None) -> str:
    if phone is None:
        return "invalid_phone_number"
    return "unknown_account" if user is None else "bad_password"
