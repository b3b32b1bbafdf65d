"""Simulator configuration: one entry per simulated provider, each in one API style.

Every knob can be changed at runtime through ``PATCH /_sim/providers/{name}`` (the same
models validate those bodies). Durations are seconds; amounts are integer minor units.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ApiStyle(enum.StrEnum):
    MOMO = "momo"
    WAVE = "wave"
    CARD = "card"


class LatencyKind(enum.StrEnum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"


class OutageMode(enum.StrEnum):
    UNAVAILABLE = "503"  # the provider answers 503 Service Unavailable
    DROP = "drop"  # the connection is cut before a complete answer (a transport error)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LatencyConfig(_Model):
    """A delay distribution in milliseconds; ``lognormal`` is clamped to [min_ms, max_ms]
    with its median at their geometric mean."""

    kind: LatencyKind = LatencyKind.UNIFORM
    min_ms: int = Field(default=200, ge=0)
    max_ms: int = Field(default=2000, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> LatencyConfig:
        if self.max_ms < self.min_ms:
            raise ValueError("max_ms must be >= min_ms")
        return self

    @classmethod
    def zero(cls) -> LatencyConfig:
        return cls(kind=LatencyKind.FIXED, min_ms=0, max_ms=0)


class FeeRule(_Model):
    """fee = clamp(fixed + amount * bps / 10 000 rounded half up, min_fee, max_fee)."""

    bps: int = Field(default=0, ge=0, le=10_000)
    fixed: int = Field(default=0, ge=0)
    min_fee: int = Field(default=0, ge=0)
    max_fee: int | None = Field(default=None, ge=0)

    def fee_for(self, amount: int) -> int:
        fee = self.fixed + (amount * self.bps + 5_000) // 10_000
        fee = max(fee, self.min_fee)
        if self.max_fee is not None:
            fee = min(fee, self.max_fee)
        return fee


class BehaviourMix(_Model):
    """Probabilities (0..1) of each injected behaviour for references without a magic value;
    the draw is a hash of (seed, reference), so a reference always gets the same behaviour."""

    decline: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    late_success: float = Field(default=0.0, ge=0, le=1)
    lost_callback: float = Field(default=0.0, ge=0, le=1)
    duplicate_callback: float = Field(default=0.0, ge=0, le=1)
    stuck_pending: float = Field(default=0.0, ge=0, le=1)
    reversal: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> BehaviourMix:
        if sum(self.model_dump().values()) > 1.0 + 1e-9:
            raise ValueError("the behaviour probabilities add up to more than 1")
        return self


class ProviderConfig(_Model):
    style: ApiStyle
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    """Delay before the HTTP answer."""
    processing: LatencyConfig = Field(default_factory=LatencyConfig)
    """Delay between accepting an asynchronous request and its final status."""
    hold_seconds: float = Field(default=35.0, ge=0)
    """How long a 'timeout' or 'late success' request is held before it is answered."""
    webhook_url: str | None = None
    webhook_secret: str = "whsec_simulator"  # noqa: S105 (a simulator's test secret)
    webhook_retries: int = Field(default=3, ge=0, le=10)
    """Extra attempts after a failed webhook delivery (Wave and card styles; MoMo never retries)."""
    webhook_retry_delay_seconds: float = Field(default=1.0, ge=0)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    fees: dict[str, FeeRule] = Field(default_factory=dict)
    """Fee rule per operation type (collection, disbursement, checkout, payout, capture...)."""
    reversal_after_seconds: float = Field(default=60.0, ge=0)
    authorization_ttl_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    chargeback_after_seconds: float = Field(default=60.0, ge=0)
    currencies: list[str] = Field(default_factory=lambda: ["XOF", "XAF", "GHS", "EUR", "USD", "NGN"])
    down: bool = False
    outage_mode: OutageMode = OutageMode.UNAVAILABLE
    mix: BehaviourMix = Field(default_factory=BehaviourMix)
    amount_rules: dict[int, str] = Field(default_factory=dict)
    """Exact amount (minor units) → magic code (see README), checked before the MSISDN."""

    def fee_for(self, operation_type: str, amount: int) -> int:
        rule = self.fees.get(operation_type)
        return rule.fee_for(amount) if rule is not None else 0


class ProviderPatch(_Model):
    """A runtime change of some of a provider's settings (unset fields are kept)."""

    latency: LatencyConfig | None = None
    processing: LatencyConfig | None = None
    hold_seconds: float | None = Field(default=None, ge=0)
    webhook_url: str | None = None
    webhook_retries: int | None = Field(default=None, ge=0, le=10)
    webhook_retry_delay_seconds: float | None = Field(default=None, ge=0)
    fees: dict[str, FeeRule] | None = None
    reversal_after_seconds: float | None = Field(default=None, ge=0)
    authorization_ttl_seconds: float | None = Field(default=None, gt=0)
    chargeback_after_seconds: float | None = Field(default=None, ge=0)
    mix: BehaviourMix | None = None
    amount_rules: dict[int, str] | None = None


def default_providers() -> dict[str, ProviderConfig]:
    return {
        "momo": ProviderConfig(
            style=ApiStyle.MOMO,
            fees={"collection": FeeRule(bps=100), "disbursement": FeeRule(bps=50, min_fee=25)},
        ),
        "wave": ProviderConfig(
            style=ApiStyle.WAVE,
            fees={"checkout": FeeRule(bps=100), "payout": FeeRule(bps=100)},
        ),
        "card": ProviderConfig(
            style=ApiStyle.CARD,
            fees={"capture": FeeRule(bps=180, fixed=25)},
        ),
    }


class SimulatorConfig(_Model):
    providers: dict[str, ProviderConfig] = Field(default_factory=default_providers)
    seed: int = 42
    tick_interval_seconds: float = Field(default=0.05, gt=0)
    """How often due transitions (processing done, reversals, expiries) are applied."""

    @model_validator(mode="after")
    def _names(self) -> SimulatorConfig:
        for name in self.providers:
            if not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"provider name {name!r} must be a plain identifier (it is a URL prefix)")
        return self

    @classmethod
    def for_tests(cls, **overrides: object) -> SimulatorConfig:
        """Every provider with zero latency and processing, short holds and fast retries."""
        providers = default_providers()
        for provider in providers.values():
            provider.latency = LatencyConfig.zero()
            provider.processing = LatencyConfig.zero()
            provider.hold_seconds = 0.5
            provider.webhook_retry_delay_seconds = 0.05
            provider.webhook_timeout_seconds = 2.0
        return cls.model_validate({"providers": providers, **overrides})
