"""Authenticating another Kora service (ADR 0023): a service token read and verified by the
`ServiceTokenReader`, then judged by the domain's rules against the core's Clock."""

from __future__ import annotations

from kora.identity.domain.service_identity import (
    ServiceCaller,
    ServiceTokenInvalid,
    admit_service_claims,
    require_scope,
)
from kora.identity.ports import ServiceTokenReader
from kora.kernel import Clock


class ServiceAuthenticator:
    """Admits a service call when its token is valid and carries the operation's scope."""

    def __init__(self, reader: ServiceTokenReader, clock: Clock, *, services: frozenset[str] = frozenset()) -> None:
        self._reader = reader
        self._clock = clock
        self.services = services  # the configured service names (bounded metric label values)

    def authenticate(self, token: str | None, scope: str) -> ServiceCaller:
        """The calling service, if `token` is a valid service token that carries `scope`.
        Raises ServiceTokenInvalid (401: missing, not ours, expired, asks for more than granted)
        or ServiceScopeMissing (403: valid, but without this operation's scope)."""
        if not token:
            raise ServiceTokenInvalid("missing")
        identity, claims = self._reader.read(token)
        caller = admit_service_claims(claims, identity, now=self._clock.now())
        return require_scope(caller, scope)
