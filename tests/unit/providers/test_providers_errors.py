"""Classification: may the provider have accepted the request?"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from kora.providers.resilience import (
    BREAKER_OPEN,
    BULKHEAD_FULL,
    ProviderDeclined,
    ProviderTimeout,
    ProviderUnavailable,
    TimeoutPolicy,
    call_with_timeout,
    classify_http_status,
    classify_httpx_error,
    is_provider_fault,
)

REQUEST = httpx.Request("POST", "http://provider.test/disbursements")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("refused", request=REQUEST), "connect_error"),
        (httpx.ConnectTimeout("slow connect", request=REQUEST), "connect_timeout"),
        (httpx.PoolTimeout("no connection", request=REQUEST), "pool_timeout"),
        (httpx.ProxyError("proxy", request=REQUEST), "proxy_error"),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), "unsupported_protocol"),
    ],
)
def test_errors_before_sending_are_unavailable(exc: httpx.HTTPError, reason: str) -> None:
    classified = classify_httpx_error(exc, provider="mtn")
    assert type(classified) is ProviderUnavailable
    assert (classified.reason, classified.provider) == (reason, "mtn")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ReadTimeout("slow answer", request=REQUEST), "read_timeout"),
        (httpx.WriteTimeout("slow send", request=REQUEST), "write_timeout"),
        (httpx.RemoteProtocolError("server disconnected", request=REQUEST), "protocol_error"),
        (httpx.ReadError("reset", request=REQUEST), "read_error"),
        (httpx.WriteError("broken pipe", request=REQUEST), "write_error"),
        (httpx.DecodingError("bad gzip", request=REQUEST), "transport_error"),
        (httpx.CloseError("close", request=REQUEST), "transport_error"),
    ],
)
def test_errors_after_sending_are_ambiguous(exc: httpx.HTTPError, reason: str) -> None:
    classified = classify_httpx_error(exc, provider="wave")
    assert type(classified) is ProviderTimeout
    assert classified.reason == reason


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, ProviderUnavailable),
        (500, ProviderTimeout),
        (502, ProviderTimeout),
        (503, ProviderTimeout),
        (504, ProviderTimeout),
        (409, ProviderTimeout),
    ],
)
def test_status_errors(status: int, expected: type[Exception]) -> None:
    response = httpx.Response(status, request=REQUEST)
    exc = httpx.HTTPStatusError("status", request=REQUEST, response=response)
    classified = classify_httpx_error(exc)
    assert type(classified) is expected
    assert classified.reason == f"http_{status}"


def test_http_status_leaves_business_answers_to_the_adapter() -> None:
    assert classify_http_status(200) is None
    assert classify_http_status(404) is None
    assert isinstance(classify_http_status(503), ProviderTimeout)
    assert isinstance(classify_http_status(503, not_accepted={429, 503}), ProviderUnavailable)


def test_provider_faults_exclude_declines_and_fast_rejections() -> None:
    assert is_provider_fault(ProviderUnavailable("connect_error"))
    assert is_provider_fault(ProviderTimeout("read_timeout"))
    assert not is_provider_fault(ProviderDeclined("insufficient_funds"))
    assert not is_provider_fault(ProviderUnavailable(BREAKER_OPEN))
    assert not is_provider_fault(ProviderUnavailable(BULKHEAD_FULL))
    assert not is_provider_fault(ValueError("bug"))


def test_declined_carries_code_and_policy() -> None:
    declined = ProviderDeclined("payer_not_found", retryable_elsewhere=True, provider="mtn")
    assert (declined.code, declined.reason, declined.retryable_elsewhere) == (
        "payer_not_found",
        "payer_not_found",
        True,
    )


def test_timeout_policy_validates_and_maps_to_httpx() -> None:
    policy = TimeoutPolicy(connect=0.5, read=2.0, total=3.0)
    timeout = policy.httpx_timeout()
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (0.5, 2.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="must not exceed"):
        TimeoutPolicy(connect=5.0, read=1.0, total=2.0)
    with pytest.raises(ValueError, match="> 0"):
        TimeoutPolicy(total=0)


async def test_expired_budget_is_an_ambiguous_timeout() -> None:
    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(ProviderTimeout) as caught:
        await call_with_timeout(slow, 0.01, provider="mtn")
    assert (caught.value.reason, caught.value.provider) == ("timeout", "mtn")


async def test_socket_timeout_inside_is_ambiguous_too_and_other_errors_pass() -> None:
    async def socket_timeout() -> str:
        raise TimeoutError

    async def declined() -> str:
        raise ProviderDeclined("insufficient_funds")

    async def fast() -> str:
        return "ok"

    with pytest.raises(ProviderTimeout, match="socket_timeout"):
        await call_with_timeout(socket_timeout, 5)
    with pytest.raises(ProviderDeclined):
        await call_with_timeout(declined, 5)
    assert await call_with_timeout(fast, 5) == "ok"
