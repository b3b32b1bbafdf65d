"""Identity's unit of work on SQLAlchemy: the platform's one-transaction unit of work, with
identity's repositories and the wallet and audit adapters (owned by other modules, handed in
as factories) all built on the same connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.audit.ports import AuditRecorder
from kora.identity.adapters.nonces import SqlRequestNonceStore
from kora.identity.adapters.sql import SqlLoginThrottle, SqlRefreshTokenStore, SqlUserRepository
from kora.identity.ports import WalletOpener
from kora.platform.uow import SqlUnitOfWork

_T = TypeVar("_T")


class SqlIdentityUnitOfWork(SqlUnitOfWork):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        wallets: Callable[[AsyncConnection], WalletOpener],
        audit: Callable[[AsyncConnection], AuditRecorder],
    ) -> None:
        super().__init__(engine)
        self._wallets_factory = wallets
        self._audit_factory = audit
        self._users: SqlUserRepository | None = None
        self._refresh_tokens: SqlRefreshTokenStore | None = None
        self._throttle: SqlLoginThrottle | None = None
        self._wallets: WalletOpener | None = None
        self._audit: AuditRecorder | None = None
        self._request_nonces: SqlRequestNonceStore | None = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        conn = self.connection
        self._users = SqlUserRepository(conn)
        self._refresh_tokens = SqlRefreshTokenStore(conn)
        self._throttle = SqlLoginThrottle(conn)
        self._wallets = self._wallets_factory(conn)
        self._audit = self._audit_factory(conn)
        self._request_nonces = SqlRequestNonceStore(conn)
        return self

    @property
    def users(self) -> SqlUserRepository:
        return _inside(self._users)

    @property
    def refresh_tokens(self) -> SqlRefreshTokenStore:
        return _inside(self._refresh_tokens)

    @property
    def throttle(self) -> SqlLoginThrottle:
        return _inside(self._throttle)

    @property
    def wallets(self) -> WalletOpener:
        return _inside(self._wallets)

    @property
    def audit(self) -> AuditRecorder:
        return _inside(self._audit)

    @property
    def request_nonces(self) -> SqlRequestNonceStore:
        return _inside(self._request_nonces)


def _inside(value: _T | None) -> _T:
    if value is None:
        raise RuntimeError("unit of work used outside its `async with` block")
    return value
