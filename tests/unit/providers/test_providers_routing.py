"""Routing and fallback: move on only when the previous provider certainly did not accept."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from kora.providers.resilience import (
    BREAKER_OPEN,
    EXHAUSTED,
    NO_ROUTE,
    BreakerPolicy,
    ProviderDeclined,
    ProviderGuards,
    ProviderPolicy,
    ProviderTimeout,
    ProviderUnavailable,
)
from kora.providers.routing import ProviderRouter, RouteAttempt, RoutingTable
from tests.unit.providers.support import FakeClock, RecordingMetrics

TABLE = RoutingTable.from_mapping(
    {"disburse": {"XOF": ["mtn", "wave", "orange"], "*": ["sandbox"]}, "collect": {"XOF": ["wave"]}}
)
REQUEST = httpx.Request("POST", "http://provider.test/disbursements")


class Providers:
    """Per-provider scripted behaviour; records who was called."""

    def __init__(self, **behaviour: BaseException | None) -> None:
        self.behaviour = behaviour
        self.called: list[str] = []

    async def __call__(self, provider: str) -> str:
        self.called.append(provider)
        error = self.behaviour.get(provider)
        if error is not None:
            raise error
        return f"{provider}-ref"


def router() -> tuple[ProviderRouter, RecordingMetrics]:
    metrics = RecordingMetrics()
    return ProviderRouter(TABLE, metrics=metrics), metrics


def test_table_lookup_and_wildcard() -> None:
    assert TABLE.providers_for("disburse", "XOF") == ("mtn", "wave", "orange")
    assert TABLE.providers_for("disburse", "XAF") == ("sandbox",)
    assert TABLE.providers_for("collect", "XAF") == ()
    assert TABLE.provider_names() == {"mtn", "wave", "orange", "sandbox"}


def test_table_from_json_and_validation() -> None:
    table = RoutingTable.from_json('{"collect": {"XOF": ["mtn", "wave"]}}')
    assert table.providers_for("collect", "XOF") == ("mtn", "wave")
    bad_tables: tuple[dict[str, Any], ...] = (
        {"collect": {"XOF": []}},
        {"collect": {"XOF": ["mtn", "mtn"]}},
        {"collect": {"xof": ["mtn"]}},
        {"Collect!": {"XOF": ["mtn"]}},
        {"collect": {"XOF": "mtn"}},
        {"collect": {"XOF": ["+22507000000"]}},
    )
    for bad in bad_tables:
        with pytest.raises(ValueError):  # noqa: PT011
            RoutingTable.from_mapping(bad)
    with pytest.raises(ValueError, match="object"):
        RoutingTable.from_json("[]")
    with pytest.raises(ValueError, match="orange"):
        TABLE.check_configured(["mtn", "wave", "sandbox"])
    TABLE.check_configured(["mtn", "wave", "orange", "sandbox"])


async def test_first_provider_used_when_it_accepts() -> None:
    r, metrics = router()
    providers = Providers()
    routed = await r.route_with_trail("disburse", "XOF", providers)
    assert (routed.value, routed.provider, routed.tried) == ("mtn-ref", "mtn", ("mtn",))
    assert providers.called == ["mtn"]
    assert metrics.fallbacks == []


async def test_outage_on_a_sends_to_b() -> None:
    r, metrics = router()
    providers = Providers(mtn=ProviderUnavailable("connect_error", provider="mtn"))
    routed = await r.route_with_trail("disburse", "XOF", providers)
    assert routed.provider == "wave"
    assert routed.attempts == (RouteAttempt("mtn", "unavailable", "connect_error"), RouteAttempt("wave", "accepted"))
    assert metrics.fallbacks == [("disburse", "mtn", "connect_error")]


async def test_breaker_open_on_a_sends_to_b_without_calling_a() -> None:
    clock = FakeClock()
    guards = ProviderGuards(
        default=ProviderPolicy(breaker=BreakerPolicy(fail_max=1)), clock=clock, sleep=clock.sleep, rng=random.Random(0)
    )
    reached: list[str] = []

    def through_guard(behaviour: Callable[[str], Awaitable[str]]) -> Callable[[str], Awaitable[str]]:
        async def attempt(provider: str) -> str:
            async def request() -> str:
                reached.append(provider)
                return await behaviour(provider)

            return await guards.get(provider).call("disburse", request)

        return attempt

    r, metrics = router()
    # one connection refused opens mtn's breaker (fail_max=1); that payment falls back to wave
    assert (
        await r.route("disburse", "XOF", through_guard(Providers(mtn=httpx.ConnectError("refused", request=REQUEST))))
        == "wave-ref"
    )
    assert guards.get("mtn").breaker.state == "open"
    reached.clear()
    routed = await r.route_with_trail("disburse", "XOF", through_guard(Providers()))
    assert routed.provider == "wave"
    assert routed.attempts[0] == RouteAttempt("mtn", "unavailable", BREAKER_OPEN)
    assert reached == ["wave"]  # mtn's breaker refused without a request
    assert metrics.fallbacks[-1] == ("disburse", "mtn", BREAKER_OPEN)


async def test_timeout_on_a_is_raised_and_b_never_called() -> None:
    r, metrics = router()
    providers = Providers(mtn=ProviderTimeout("read_timeout", provider="mtn"))
    with pytest.raises(ProviderTimeout) as caught:
        await r.route("disburse", "XOF", providers)
    assert providers.called == ["mtn"]
    assert caught.value.provider == "mtn"
    assert caught.value.tried == ("mtn",)
    assert metrics.fallbacks == []


async def test_timeout_on_b_after_outage_on_a_names_both() -> None:
    r, _ = router()
    providers = Providers(
        mtn=ProviderUnavailable("connect_error"), wave=ProviderTimeout("read_timeout", provider="wave")
    )
    with pytest.raises(ProviderTimeout) as caught:
        await r.route("disburse", "XOF", providers)
    assert caught.value.tried == ("mtn", "wave")
    assert providers.called == ["mtn", "wave"]


async def test_unclassified_error_stops_routing() -> None:
    r, _ = router()
    providers = Providers(mtn=KeyError("bug"))
    with pytest.raises(KeyError):
        await r.route("disburse", "XOF", providers)
    assert providers.called == ["mtn"]


async def test_decline_retryable_elsewhere_goes_to_b() -> None:
    r, metrics = router()
    providers = Providers(mtn=ProviderDeclined("payer_not_found", retryable_elsewhere=True))
    assert await r.route("disburse", "XOF", providers) == "wave-ref"
    assert metrics.fallbacks == [("disburse", "mtn", "payer_not_found")]


async def test_decline_not_retryable_elsewhere_is_raised() -> None:
    r, _ = router()
    providers = Providers(mtn=ProviderDeclined("insufficient_funds"))
    with pytest.raises(ProviderDeclined) as caught:
        await r.route("disburse", "XOF", providers)
    assert caught.value.code == "insufficient_funds"
    assert caught.value.tried == ("mtn",)
    assert providers.called == ["mtn"]


async def test_all_unavailable_raises_unavailable_with_the_list_tried() -> None:
    r, metrics = router()
    providers = Providers(
        mtn=ProviderUnavailable("connect_error"),
        wave=ProviderUnavailable(BREAKER_OPEN),
        orange=ProviderDeclined("payer_not_found", retryable_elsewhere=True),
    )
    with pytest.raises(ProviderUnavailable) as caught:
        await r.route("disburse", "XOF", providers)
    assert caught.value.reason == EXHAUSTED
    assert caught.value.tried == ("mtn", "wave", "orange")
    assert isinstance(caught.value.__cause__, ProviderDeclined)
    # moving past the last provider is not a fallback
    assert [f[1] for f in metrics.fallbacks] == ["mtn", "wave"]


async def test_every_provider_declining_raises_the_last_decline() -> None:
    table = RoutingTable.from_mapping({"disburse": {"XOF": ["mtn", "wave"]}})
    providers = Providers(
        mtn=ProviderDeclined("payer_not_found", retryable_elsewhere=True),
        wave=ProviderDeclined("payer_not_found", retryable_elsewhere=True),
    )
    with pytest.raises(ProviderDeclined) as caught:
        await ProviderRouter(table).route("disburse", "XOF", providers)
    assert caught.value.tried == ("mtn", "wave")


async def test_no_route_is_unavailable_and_calls_nobody() -> None:
    r, _ = router()
    providers = Providers()
    with pytest.raises(ProviderUnavailable, match=NO_ROUTE):
        await r.route("collect", "GHS", providers)
    assert providers.called == []
