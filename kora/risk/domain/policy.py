"""The risk policy: limits per KYC tier and payment type, device cooling, anomaly flags and the
score thresholds, read from a plain mapping (the YAML file) with strict validation.

Validation refuses unknown keys, non-integer amounts, unknown windows, tiers or payment types,
a soft limit at or above its hard limit, and a cash-out limit looser than the same tier's P2P
limit — so a typo in the file cannot silently switch a limit off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kora.kernel.money import currency as _currency
from kora.risk.domain.model import Outcome, PaymentType, Window


class PolicyError(ValueError):
    """The policy file is not valid; the message says where (`tiers.tier0.p2p.amount.day`)."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """A limit: above `soft` the payment goes to review, above `hard` it is denied."""

    soft: int | None = None
    hard: int | None = None

    def __post_init__(self) -> None:
        if self.soft is None and self.hard is None:
            raise PolicyError("a limit needs a soft or a hard threshold")
        if self.soft is not None and self.hard is not None and self.soft >= self.hard:
            raise PolicyError(f"soft limit {self.soft} must be below hard limit {self.hard}")

    def scaled(self, percent: int) -> Threshold:
        """Both thresholds at `percent` %; a soft threshold that rounding brings up to the hard
        one is dropped (the band between them is gone, the hard limit still holds)."""
        soft = None if self.soft is None else self.soft * percent // 100
        hard = None if self.hard is None else self.hard * percent // 100
        if soft is not None and hard is not None and soft >= hard:
            soft = None
        return Threshold(soft=soft, hard=hard)

    def lowest(self) -> int:
        values = [v for v in (self.soft, self.hard) if v is not None]
        return min(values)

    def breach(self, observed: int) -> tuple[Outcome, int] | None:
        """The outcome and the limit crossed when `observed` is above a threshold, else None."""
        if self.hard is not None and observed > self.hard:
            return Outcome.DENY, self.hard
        if self.soft is not None and observed > self.soft:
            return Outcome.REVIEW, self.soft
        return None


@dataclass(frozen=True, slots=True)
class TypeLimits:
    per_transaction: Threshold
    amount: Mapping[Window, Threshold]
    count: Mapping[Window, Threshold]
    per_recipient: Mapping[Window, Threshold]


@dataclass(frozen=True, slots=True)
class DeviceCooling:
    """A device first seen by this payer less than `hours` ago has its amount limits scaled to
    `limit_percent` % (counts are unchanged)."""

    hours: int
    limit_percent: int


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    review_at: int
    deny_at: int

    def outcome(self, score: int) -> Outcome:
        if score >= self.deny_at:
            return Outcome.DENY
        if score >= self.review_at:
            return Outcome.REVIEW
        return Outcome.ALLOW


@dataclass(frozen=True, slots=True)
class NewDeviceHighAmount:
    points: int
    device_age_hours: int
    min_amount: int
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class NewRecipientHighAmount:
    points: int
    min_amount: int
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class FanOut:
    points: int
    window_minutes: int
    distinct_recipients: int
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class FanIn:
    points: int
    window_minutes: int
    distinct_senders: int
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class Structuring:
    """An amount within `within_percent` % below the per-transaction limit, with at least
    `min_prior` such amounts already in the window."""

    points: int
    within_percent: int
    min_prior: int
    window: Window
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class Layering:
    """A cash-out of at least `cash_out_percent` % of the cash-in received within the window,
    when that cash-in is at least `min_cash_in`."""

    points: int
    window_minutes: int
    min_cash_in: int
    cash_out_percent: int
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class UnusualHours:
    """A payment of at least `min_amount` at an hour (± `neighbour_hours`) holding at most
    `max_share_percent` % of the payer's past spending, once the payer has `min_history`
    past payments."""

    points: int
    min_history: int
    max_share_percent: int
    neighbour_hours: int
    min_amount: int
    applies_to: frozenset[PaymentType]


@dataclass(frozen=True, slots=True)
class Flags:
    new_device_high_amount: NewDeviceHighAmount | None = None
    new_recipient_high_amount: NewRecipientHighAmount | None = None
    fan_out: FanOut | None = None
    fan_in_mule: FanIn | None = None
    structuring: Structuring | None = None
    layering: Layering | None = None
    unusual_hours: UnusualHours | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    currency: str
    tiers: Mapping[str, Mapping[PaymentType, TypeLimits]]
    device_cooling: DeviceCooling
    score: ScoreThresholds
    flags: Flags

    def limits(self, tier: str, payment_type: PaymentType) -> TypeLimits | None:
        by_type = self.tiers.get(tier)
        return None if by_type is None else by_type.get(payment_type)


# --- parsing -------------------------------------------------------------------------------

_ALL_TYPES = frozenset(PaymentType)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{path}: expected a mapping")
    return value


def _keys(value: Mapping[str, Any], path: str, *, required: set[str], optional: set[str] | None = None) -> None:
    unknown = set(value) - required - (optional or set())
    if unknown:
        raise PolicyError(f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = required - set(value)
    if missing:
        raise PolicyError(f"{path}: missing key(s) {', '.join(sorted(missing))}")


def _int(value: Any, path: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if type(value) is not int:  # bool and float refused: amounts are integer minor units
        raise PolicyError(f"{path}: expected an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise PolicyError(f"{path}: must be {bound}, got {value}")
    return value


def _window(name: Any, path: str) -> Window:
    try:
        return Window(name)
    except ValueError:
        known = ", ".join(w.value for w in Window)
        raise PolicyError(f"{path}: unknown window {name!r} (known: {known})") from None


def _threshold(value: Any, path: str) -> Threshold:
    data = _mapping(value, path)
    _keys(data, path, required=set(), optional={"soft", "hard"})
    if not data:
        raise PolicyError(f"{path}: needs a soft or a hard limit")
    soft = _int(data["soft"], f"{path}.soft") if "soft" in data else None
    hard = _int(data["hard"], f"{path}.hard") if "hard" in data else None
    if soft is not None and hard is not None and soft >= hard:
        raise PolicyError(f"{path}: soft limit {soft} must be below hard limit {hard}")
    return Threshold(soft=soft, hard=hard)


def _windows(value: Any, path: str) -> dict[Window, Threshold]:
    data = _mapping(value, path)
    return {_window(name, f"{path}.{name}"): _threshold(limit, f"{path}.{name}") for name, limit in data.items()}


def _type_limits(value: Any, path: str) -> TypeLimits:
    data = _mapping(value, path)
    _keys(data, path, required={"per_transaction"}, optional={"amount", "count", "per_recipient"})
    return TypeLimits(
        per_transaction=_threshold(data["per_transaction"], f"{path}.per_transaction"),
        amount=_windows(data.get("amount", {}), f"{path}.amount"),
        count=_windows(data.get("count", {}), f"{path}.count"),
        per_recipient=_windows(data.get("per_recipient", {}), f"{path}.per_recipient"),
    )


def _payment_type(name: Any, path: str) -> PaymentType:
    try:
        return PaymentType(name)
    except ValueError:
        known = ", ".join(t.value for t in PaymentType)
        raise PolicyError(f"{path}: unknown payment type {name!r} (known: {known})") from None


def _tier(value: Any, path: str) -> dict[PaymentType, TypeLimits]:
    data = _mapping(value, path)
    limits = {_payment_type(name, f"{path}.{name}"): _type_limits(v, f"{path}.{name}") for name, v in data.items()}
    missing = _ALL_TYPES - set(limits)
    if missing:
        raise PolicyError(f"{path}: missing payment type(s) {', '.join(sorted(t.value for t in missing))}")
    _cash_out_stricter(limits, path)
    return limits


def _not_looser(strict: Threshold, loose: Threshold, path: str) -> None:
    for level in ("soft", "hard"):
        a, b = getattr(strict, level), getattr(loose, level)
        if a is not None and b is not None and a > b:
            raise PolicyError(f"{path}.{level}: cash_out limit {a} is looser than the p2p limit {b}")


def _cash_out_stricter(limits: Mapping[PaymentType, TypeLimits], path: str) -> None:
    cash_out, p2p = limits[PaymentType.CASH_OUT], limits[PaymentType.P2P]
    _not_looser(cash_out.per_transaction, p2p.per_transaction, f"{path}.cash_out.per_transaction")
    for window, threshold in cash_out.amount.items():
        if window in p2p.amount:
            _not_looser(threshold, p2p.amount[window], f"{path}.cash_out.amount.{window.value}")


def _applies_to(data: Mapping[str, Any], path: str) -> frozenset[PaymentType]:
    if "applies_to" not in data:
        return _ALL_TYPES
    names = data["applies_to"]
    if not isinstance(names, list) or not names:
        raise PolicyError(f"{path}.applies_to: expected a non-empty list of payment types")
    return frozenset(_payment_type(n, f"{path}.applies_to") for n in names)


def _flag_fields(value: Any, path: str, fields: set[str]) -> tuple[Mapping[str, Any], int, frozenset[PaymentType]]:
    data = _mapping(value, path)
    _keys(data, path, required={"points", *fields}, optional={"applies_to"})
    return data, _int(data["points"], f"{path}.points"), _applies_to(data, path)


def _flags(value: Any, path: str) -> Flags:
    data = _mapping(value, path)
    known = set(Flags.__dataclass_fields__)
    _keys(data, path, required=set(), optional=known)
    parsed: dict[str, object] = {}
    if "new_device_high_amount" in data:
        p = f"{path}.new_device_high_amount"
        d, pts, types = _flag_fields(data["new_device_high_amount"], p, {"device_age_hours", "min_amount"})
        parsed["new_device_high_amount"] = NewDeviceHighAmount(
            pts, _int(d["device_age_hours"], f"{p}.device_age_hours"), _int(d["min_amount"], f"{p}.min_amount"), types
        )
    if "new_recipient_high_amount" in data:
        p = f"{path}.new_recipient_high_amount"
        d, pts, types = _flag_fields(data["new_recipient_high_amount"], p, {"min_amount"})
        parsed["new_recipient_high_amount"] = NewRecipientHighAmount(
            pts, _int(d["min_amount"], f"{p}.min_amount"), types
        )
    if "fan_out" in data:
        p = f"{path}.fan_out"
        d, pts, types = _flag_fields(data["fan_out"], p, {"window_minutes", "distinct_recipients"})
        parsed["fan_out"] = FanOut(
            pts, _int(d["window_minutes"], f"{p}.window_minutes"),
            _int(d["distinct_recipients"], f"{p}.distinct_recipients", minimum=2), types,
        )  # fmt: skip
    if "fan_in_mule" in data:
        p = f"{path}.fan_in_mule"
        d, pts, types = _flag_fields(data["fan_in_mule"], p, {"window_minutes", "distinct_senders"})
        parsed["fan_in_mule"] = FanIn(
            pts, _int(d["window_minutes"], f"{p}.window_minutes"),
            _int(d["distinct_senders"], f"{p}.distinct_senders", minimum=2), types,
        )  # fmt: skip
    if "structuring" in data:
        p = f"{path}.structuring"
        d, pts, types = _flag_fields(data["structuring"], p, {"within_percent", "min_prior", "window"})
        parsed["structuring"] = Structuring(
            pts, _int(d["within_percent"], f"{p}.within_percent", maximum=50),
            _int(d["min_prior"], f"{p}.min_prior", minimum=0), _window(d["window"], f"{p}.window"), types,
        )  # fmt: skip
    if "layering" in data:
        p = f"{path}.layering"
        d, pts, types = _flag_fields(data["layering"], p, {"window_minutes", "min_cash_in", "cash_out_percent"})
        parsed["layering"] = Layering(
            pts, _int(d["window_minutes"], f"{p}.window_minutes"), _int(d["min_cash_in"], f"{p}.min_cash_in"),
            _int(d["cash_out_percent"], f"{p}.cash_out_percent", maximum=100), types,
        )  # fmt: skip
    if "unusual_hours" in data:
        p = f"{path}.unusual_hours"
        fields = {"min_history", "max_share_percent", "neighbour_hours", "min_amount"}
        d, pts, types = _flag_fields(data["unusual_hours"], p, fields)
        parsed["unusual_hours"] = UnusualHours(
            pts, _int(d["min_history"], f"{p}.min_history"),
            _int(d["max_share_percent"], f"{p}.max_share_percent", minimum=0, maximum=100),
            _int(d["neighbour_hours"], f"{p}.neighbour_hours", minimum=0, maximum=11),
            _int(d["min_amount"], f"{p}.min_amount"), types,
        )  # fmt: skip
    return Flags(**parsed)  # type: ignore[arg-type]


def parse_policy(document: Any) -> Policy:
    """The policy in `document` (the parsed YAML/JSON), or PolicyError saying what is wrong."""
    data = _mapping(document, "policy")
    _keys(data, "policy", required={"version", "currency", "tiers", "device_cooling", "score"}, optional={"flags"})
    version = data["version"]
    if not isinstance(version, str | int) or isinstance(version, bool) or not str(version).strip():
        raise PolicyError("version: expected a non-empty string")
    code = data["currency"]
    try:
        _currency(code)
    except (ValueError, TypeError):
        raise PolicyError(f"currency: unknown or unsupported currency {code!r}") from None
    tiers_data = _mapping(data["tiers"], "tiers")
    if not tiers_data:
        raise PolicyError("tiers: at least one tier is needed")
    tiers = {str(name): _tier(value, f"tiers.{name}") for name, value in tiers_data.items()}
    cooling_data = _mapping(data["device_cooling"], "device_cooling")
    _keys(cooling_data, "device_cooling", required={"hours", "limit_percent"})
    cooling = DeviceCooling(
        hours=_int(cooling_data["hours"], "device_cooling.hours", minimum=0),
        limit_percent=_int(cooling_data["limit_percent"], "device_cooling.limit_percent", maximum=100),
    )
    score_data = _mapping(data["score"], "score")
    _keys(score_data, "score", required={"review_at", "deny_at"})
    score = ScoreThresholds(
        review_at=_int(score_data["review_at"], "score.review_at"), deny_at=_int(score_data["deny_at"], "score.deny_at")
    )
    if score.review_at >= score.deny_at:
        raise PolicyError("score: review_at must be below deny_at")
    return Policy(
        version=str(version),
        currency=code,
        tiers=tiers,
        device_cooling=cooling,
        score=score,
        flags=_flags(data.get("flags", {}), "flags"),
    )
