"""The operational controls' use cases on in-memory fakes: validation, audit, the cache the
payment path reads (how many reads it costs), fail-static, and the provider registry's hook."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import pytest

from kora.audit import InMemoryAuditTrail
from kora.kernel import FixedClock
from kora.operations import (
    Control,
    ControlKind,
    ControlRequest,
    ControlSnapshot,
    InvalidControl,
    Operation,
    OperationalControls,
    OperationPaused,
    ProviderDisabled,
    UnknownProviderControl,
    overview,
)
from kora.providers import NoProviderAvailable, StaticProviderRegistry
from kora.providers.adapters.sandbox import SandboxGateway
from kora.providers.routing import RoutingTable


class MemoryControlStore:
    def __init__(self, shared: MemoryControlStore | None = None) -> None:
        self.rows: dict[tuple[ControlKind, str], Control] = {}
        self.reads = 0
        self.broken = False
        self._shared = shared  # a unit of work's view counts its reads on the shared table

    async def all(self) -> list[Control]:
        (self._shared or self).reads += 1
        return list(self.rows.values())

    async def get(self, kind: ControlKind, target: str, *, for_update: bool = False) -> Control | None:
        return self.rows.get((kind, target))

    async def put(self, control: Control) -> None:
        self.rows[(control.kind, control.target)] = control

    async def remove(self, kind: ControlKind, target: str) -> bool:
        return self.rows.pop((kind, target), None) is not None


class MemoryUnitOfWork:
    """Commits copy the staged rows into the shared store; leaving without commit drops them."""

    def __init__(self, store: MemoryControlStore, audit: InMemoryAuditTrail) -> None:
        self._shared = store
        self._audit = audit
        self._staged = MemoryControlStore(store)
        self._records_before = 0

    @property
    def controls(self) -> MemoryControlStore:
        return self._staged

    @property
    def audit(self) -> InMemoryAuditTrail:
        return self._audit

    async def __aenter__(self) -> Self:
        if self._shared.broken:
            raise ConnectionError("database down")
        self._staged.rows = dict(self._shared.rows)
        self._records_before = len(self._audit.records)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        del self._audit.records[self._records_before :]  # rolled back unless committed

    async def commit(self) -> None:
        self._shared.rows = dict(self._staged.rows)
        self._records_before = len(self._audit.records)


class RecordingMetrics:
    def __init__(self) -> None:
        self.published: list[tuple[dict[str, int], dict[str, int]]] = []
        self.refusals: list[tuple[str, str]] = []
        self.failures = 0

    def publish(self, snapshot: ControlSnapshot, providers: Iterable[str]) -> None:
        paused = {op.value: int(snapshot.pause_of(op) is not None) for op in Operation}
        disabled = {name: int(snapshot.is_disabled(name)) for name in {*providers, *snapshot.disabled}}
        self.published.append((paused, disabled))

    def refused(self, operation: str, reason: str) -> None:
        self.refusals.append((operation, reason))

    def refresh_failed(self) -> None:
        self.failures += 1


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, providers: tuple[str, ...] = ("momo", "wave", "sandbox")) -> None:
        self.store = MemoryControlStore()
        self.audit = InMemoryAuditTrail()
        self.metrics = RecordingMetrics()
        self.ticker = Ticker()
        self.controls = OperationalControls(
            lambda: MemoryUnitOfWork(self.store, self.audit),
            clock=FixedClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC)),
            metrics=self.metrics,
            providers=providers,
            ttl_seconds=2.0,
            monotonic=self.ticker,
        )

    def reads_of_the_table(self) -> int:
        return self.store.reads


@pytest.fixture
def world() -> World:
    return World()


def req(reason: str = "MoMo disbursements time out", **kwargs: object) -> ControlRequest:
    return ControlRequest(reason=reason, actor="user:0191e0c4-6f6f-7c3a-9a39-4f4c8c0c0001", **kwargs)  # type: ignore[arg-type]


async def test_a_paused_operation_is_refused_with_its_retry_after_and_others_go_ahead(world: World) -> None:
    change = await world.controls.pause(Operation.CASH_OUT, req(incident="INC-7", retry_after_seconds=120))
    assert change.changed
    assert change.previous is None
    assert change.current is not None

    with pytest.raises(OperationPaused) as refused:
        await world.controls.ensure_open(Operation.CASH_OUT)
    assert refused.value.code == "operation_paused"
    assert refused.value.retry_after_seconds == 120
    await world.controls.ensure_open(Operation.CASH_IN)
    await world.controls.ensure_open(Operation.P2P)
    assert world.metrics.refusals == [("cash-out", "operation_paused")]

    resumed = await world.controls.resume("cash-out", actor="cli")
    assert resumed.changed
    assert resumed.current is None
    await world.controls.ensure_open(Operation.CASH_OUT)


async def test_every_change_is_audited_with_its_reason_and_a_no_op_says_so(world: World) -> None:
    await world.controls.pause(Operation.P2P, req(incident="INC-9"))
    await world.controls.pause(Operation.P2P, req("ledger verification running, pausing P2P"))
    await world.controls.resume(Operation.P2P, actor="cli")
    await world.controls.resume(Operation.P2P, actor="cli")
    await world.controls.disable_provider("momo", req())
    await world.controls.enable_provider("momo", actor="cli")

    records = [(r.action, r.subject, r.outcome) for r in world.audit.records]
    assert records == [
        ("ops.operation.paused", "operation:p2p", "success"),
        ("ops.operation.paused", "operation:p2p", "success"),
        ("ops.operation.resumed", "operation:p2p", "success"),
        ("ops.operation.resumed", "operation:p2p", "noop"),
        ("ops.provider.disabled", "provider:momo", "success"),
        ("ops.provider.enabled", "provider:momo", "success"),
    ]
    first, second, resumed = (r.details_dict() for r in world.audit.records[:3])
    assert first == {
        "reason": "MoMo disbursements time out",
        "incident": "INC-9",
        "retry_after_seconds": 300,
        "replaced": False,
    }
    assert second["replaced"] is True
    assert resumed["previous_reason"] == "ledger verification running, pausing P2P"
    assert world.audit.records[0].actor.startswith("user:")


@pytest.mark.parametrize(
    ("reason", "incident", "retry_after"),
    [
        ("no", None, 300),  # too short
        ("x" * 201, None, 300),  # too long
        ("customer +225 07 01 02 03 04 complained", None, 300),  # a phone number in the audit trail
        ("account 0701020304 stuck", None, 300),  # an account number
        ("bad\nline", None, 300),
        ("a fine reason", "INC 7 with spaces", 300),
        ("a fine reason", None, 0),
        ("a fine reason", None, 86_401),
    ],
)
async def test_a_control_with_bad_text_is_refused_and_nothing_is_written(
    world: World, reason: str, incident: str | None, retry_after: int
) -> None:
    with pytest.raises(InvalidControl):
        await world.controls.pause(Operation.CASH_IN, req(reason, incident=incident, retry_after_seconds=retry_after))
    assert world.store.rows == {}
    assert world.audit.records == []


async def test_only_a_configured_provider_can_be_disabled(world: World) -> None:
    with pytest.raises(UnknownProviderControl) as refused:
        await world.controls.disable_provider("mom", req())
    assert refused.value.code == "unknown_provider"
    with pytest.raises(InvalidControl):
        await world.controls.disable_provider("MoMo!", req())
    assert world.store.rows == {}
    assert world.audit.records == []


async def test_the_payment_path_reads_the_table_once_per_ttl_not_once_per_request(world: World) -> None:
    for _ in range(1_000):
        await world.controls.ensure_open(Operation.P2P)
    assert world.reads_of_the_table() == 1

    world.ticker.now += 1.9  # still fresh
    await world.controls.ensure_open(Operation.P2P)
    assert world.reads_of_the_table() == 1

    world.ticker.now += 0.2  # past the 2 s TTL: one more read
    for _ in range(100):
        await world.controls.ensure_open(Operation.P2P)
    assert world.reads_of_the_table() == 2


async def test_a_change_made_elsewhere_applies_here_within_the_ttl(world: World) -> None:
    await world.controls.ensure_open(Operation.CASH_OUT)  # cache loaded: nothing paused
    other_process = World()
    other_process.store = world.store
    other_process.controls._uow = lambda: MemoryUnitOfWork(world.store, other_process.audit)  # type: ignore[method-assign]
    await other_process.controls.pause(Operation.CASH_OUT, req())

    await world.controls.ensure_open(Operation.CASH_OUT)  # still the cached snapshot
    world.ticker.now += 2.0
    with pytest.raises(OperationPaused):
        await world.controls.ensure_open(Operation.CASH_OUT)


async def test_when_the_controls_cannot_be_read_the_last_ones_stay_in_force(world: World) -> None:
    await world.controls.pause(Operation.CASH_OUT, req())
    world.store.broken = True
    world.ticker.now += 5
    with pytest.raises(OperationPaused):  # fail static: a pause stays a pause
        await world.controls.ensure_open(Operation.CASH_OUT)
    assert world.metrics.failures == 1
    for _ in range(50):  # no query storm while the database is down: next try one TTL later
        with pytest.raises(OperationPaused):
            await world.controls.ensure_open(Operation.CASH_OUT)
    assert world.metrics.failures == 1
    world.ticker.now += 2.0
    with pytest.raises(OperationPaused):
        await world.controls.ensure_open(Operation.CASH_OUT)
    assert world.metrics.failures == 2
    world.store.broken = False  # back: the next read after the TTL takes the table's state again
    world.store.rows.clear()
    world.ticker.now += 2.0
    await world.controls.ensure_open(Operation.CASH_OUT)


async def test_the_metrics_follow_the_switches(world: World) -> None:
    await world.controls.pause(Operation.MERCHANT_PAYMENT, req())
    await world.controls.disable_provider("wave", req())
    paused, disabled = world.metrics.published[-1]
    assert paused == {"cash-in": 0, "cash-out": 0, "p2p": 0, "merchant-payment": 1}
    assert disabled == {"momo": 0, "wave": 1, "sandbox": 0}
    await world.controls.enable_provider("wave", actor="cli")
    assert world.metrics.published[-1][1]["wave"] == 0


async def test_a_provider_the_client_named_is_refused_when_disabled(world: World) -> None:
    await world.controls.disable_provider("momo", req(retry_after_seconds=60))
    with pytest.raises(ProviderDisabled) as refused:
        await world.controls.ensure_open(Operation.CASH_IN, provider="momo")
    assert refused.value.code == "provider_unavailable"
    assert refused.value.retry_after_seconds == 60
    await world.controls.ensure_open(Operation.CASH_IN, provider="wave")
    assert world.metrics.refusals == [("cash-in", "provider_disabled")]


class NamedSandbox(SandboxGateway):
    def __init__(self, name: str) -> None:
        self.name = name


async def test_routing_skips_a_disabled_provider_and_refuses_when_none_is_left(world: World) -> None:
    routing = RoutingTable.from_mapping({"disburse": {"XOF": ["momo", "wave"]}, "collect": {"*": ["momo"]}})
    registry = StaticProviderRegistry(
        [NamedSandbox("momo"), NamedSandbox("wave"), NamedSandbox("sandbox")],
        default="sandbox",
        routing=routing,
        availability=world.controls,
    )
    assert registry.route("disburse", "XOF") == ("momo", "wave")

    await world.controls.disable_provider("momo", req(retry_after_seconds=600))
    assert registry.route("disburse", "XOF") == ("wave",)
    with pytest.raises(NoProviderAvailable) as none_left:
        registry.route("collect", "XOF")
    assert none_left.value.code == "provider_unavailable"
    assert none_left.value.retry_after_seconds == 600
    # Payments already at momo are still resolved with it (status queries, webhooks).
    assert registry.get("momo") is not None
    assert registry.configured_route("collect", "XOF") == ("momo",)

    await world.controls.disable_provider("wave", req(retry_after_seconds=30))
    with pytest.raises(NoProviderAvailable) as both_down:
        registry.route("disburse", "XOF")
    assert both_down.value.retry_after_seconds == 30  # the soonest either may be back
    assert registry.route("disburse", "EUR") == ("sandbox",)  # the default provider's route

    view = overview(world.controls.cached(), providers=world.controls.providers, routes=registry.routes())
    assert {(r["operation"], r["currency"]): r["effective"] for r in view["routes"]} == {
        ("collect", "*"): [],
        ("disburse", "XOF"): [],
        ("disburse", "*"): ["sandbox"],
    }
    await world.controls.enable_provider("momo", actor="cli")
    assert registry.route("disburse", "XOF") == ("momo",)
