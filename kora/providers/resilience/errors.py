"""What can go wrong when Kora calls a provider, sorted by the one question that matters for
money: *may the provider have accepted the request?*

- :class:`ProviderUnavailable` — certainly **not** accepted (connection refused, DNS failure,
  connect timeout, breaker open, bulkhead full, rate limited). Safe to send elsewhere.
- :class:`ProviderTimeout` — **ambiguous**: the request was (or may have been) sent and no
  usable answer came back. The provider MAY have accepted it. Resolve by status query before
  anything else; never send it to another provider.
- :class:`ProviderDeclined` — a **definitive** answer: the provider refused. ``retryable_elsewhere``
  says whether policy lets another provider try.

Adapters raise these (or let httpx errors escape, which :func:`classify_httpx_error` maps);
the guard and the router act on the class, never on message text.
"""

from __future__ import annotations

from collections.abc import Collection

import httpx

# Reasons the toolkit itself produces (label-safe words).
BREAKER_OPEN = "breaker_open"
BULKHEAD_FULL = "bulkhead_full"

# HTTP statuses that, by default, mean "not accepted". Every 5xx is ambiguous by default:
# the provider may have processed the request before failing. A provider whose API documents
# e.g. 503 as "not processed" can pass its own set to :func:`classify_http_status`.
DEFAULT_NOT_ACCEPTED_STATUSES: frozenset[int] = frozenset({429})


class ProviderError(Exception):
    """Base of the classified provider errors.

    ``reason`` is a short label-safe word (``connect_error``, ``read_timeout``...);
    ``provider`` the provider's name when known; ``tried`` the providers the router tried,
    in order (empty outside routing).
    """

    def __init__(self, reason: str, *, provider: str | None = None, tried: tuple[str, ...] = ()) -> None:
        super().__init__(reason if provider is None else f"{provider}: {reason}")
        self.reason = reason
        self.provider = provider
        self.tried = tried


class ProviderUnavailable(ProviderError):
    """The provider certainly did not accept the request; it may be sent elsewhere."""


class ProviderTimeout(ProviderError):
    """Ambiguous outcome: the provider may have accepted the request. Resolve by status query;
    never retry it elsewhere."""


class ProviderDeclined(ProviderError):
    """A definitive refusal. ``code`` is the provider's reason, mapped to a Kora word by the
    adapter (``insufficient_funds``, ``payer_not_found``...); ``retryable_elsewhere`` is policy:
    may another provider be asked instead."""

    def __init__(
        self,
        code: str,
        *,
        retryable_elsewhere: bool = False,
        provider: str | None = None,
        tried: tuple[str, ...] = (),
    ) -> None:
        super().__init__(code, provider=provider, tried=tried)
        self.code = code
        self.retryable_elsewhere = retryable_elsewhere


def is_provider_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the provider is unhealthy (counts against its circuit breaker):
    unavailable or ambiguous outcomes. Declines are healthy answers; the toolkit's own fast
    rejections (breaker open, bulkhead full) say nothing new about the provider."""
    if isinstance(exc, ProviderUnavailable):
        return exc.reason not in (BREAKER_OPEN, BULKHEAD_FULL)
    return isinstance(exc, ProviderTimeout)


def classify_http_status(
    status_code: int,
    *,
    provider: str | None = None,
    not_accepted: Collection[int] = DEFAULT_NOT_ACCEPTED_STATUSES,
) -> ProviderError | None:
    """The transport-level meaning of an HTTP status, or ``None`` when it is for the adapter to
    interpret (2xx/3xx, and 4xx other than ``not_accepted``: those are business answers or
    our own bugs).

    ``not_accepted`` statuses → :class:`ProviderUnavailable`; any other 5xx →
    :class:`ProviderTimeout` (ambiguous: the provider may have processed the request).
    """
    if status_code in not_accepted:
        return ProviderUnavailable(f"http_{status_code}", provider=provider)
    if status_code >= 500:
        return ProviderTimeout(f"http_{status_code}", provider=provider)
    return None


def classify_httpx_error(
    exc: httpx.HTTPError,
    *,
    provider: str | None = None,
    not_accepted: Collection[int] = DEFAULT_NOT_ACCEPTED_STATUSES,
) -> ProviderError:
    """Map an httpx exception to a classified provider error. Raise the result ``from exc``.

    Certainly not sent (→ :class:`ProviderUnavailable`): ``ConnectError`` (refused, DNS),
    ``ConnectTimeout``, ``PoolTimeout`` (no connection was ever obtained), ``ProxyError``,
    ``UnsupportedProtocol``.

    Maybe sent (→ :class:`ProviderTimeout`, ambiguous): ``ReadTimeout``, ``WriteTimeout``,
    ``ReadError``, ``WriteError``, ``RemoteProtocolError``, and anything else — an error we do
    not recognise is treated as ambiguous, never as safe to send elsewhere.

    ``HTTPStatusError`` (from ``raise_for_status``) goes through :func:`classify_http_status`;
    a status it leaves to the adapter (4xx) is reported as ambiguous here, since this function
    must return an error and has no business meaning to give it.
    """
    match exc:
        case httpx.ConnectTimeout():
            return ProviderUnavailable("connect_timeout", provider=provider)
        case httpx.PoolTimeout():
            return ProviderUnavailable("pool_timeout", provider=provider)
        case httpx.ConnectError():
            return ProviderUnavailable("connect_error", provider=provider)
        case httpx.ProxyError():
            return ProviderUnavailable("proxy_error", provider=provider)
        case httpx.UnsupportedProtocol():
            return ProviderUnavailable("unsupported_protocol", provider=provider)
        case httpx.ReadTimeout():
            return ProviderTimeout("read_timeout", provider=provider)
        case httpx.WriteTimeout():
            return ProviderTimeout("write_timeout", provider=provider)
        case httpx.RemoteProtocolError():
            return ProviderTimeout("protocol_error", provider=provider)
        case httpx.ReadError():
            return ProviderTimeout("read_error", provider=provider)
        case httpx.WriteError():
            return ProviderTimeout("write_error", provider=provider)
        case httpx.HTTPStatusError():
            classified = classify_http_status(exc.response.status_code, provider=provider, not_accepted=not_accepted)
            return classified or ProviderTimeout(f"http_{exc.response.status_code}", provider=provider)
        case _:
            return ProviderTimeout("transport_error", provider=provider)
