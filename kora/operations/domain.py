"""Operational controls for controlled degradation (pure: standard library only).

Two kinds of switch, each set by an operator with a reason and cleared by removing it:

- an **operation pause** (`cash-in`, `cash-out`, `p2p`, `merchant-payment`): new requests of
  that operation are refused before anything is written (503 `operation_paused`, Retry-After);
  payments already under way keep being resolved (status queries, webhooks, settlement).
- a **provider disable**: routing skips the provider, so new cash-ins/outs go to the next
  provider of their route; with none left they are refused (503 `provider_unavailable`).
  Status queries, webhooks and settlement of payments already at that provider go on.

A control's text (reason, incident reference) lands in the append-only audit trail: it is
refused when it looks like it holds a phone number or an account number.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_RETRY_AFTER_SECONDS = 300
MAX_RETRY_AFTER_SECONDS = 86_400
REASON_MIN_LENGTH = 3
REASON_MAX_LENGTH = 200
ACTOR_MAX_LENGTH = 200

PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
INCIDENT_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#-]{0,63}")
# The same conservative test as the audit trail's: 8+ digits in a row, or an international
# number, is personal data (or an account number) until proven otherwise.
_DIGIT_RUN = re.compile(r"\d{8,}")
_INTERNATIONAL_NUMBER = re.compile(r"\+\s*\d[\d\s.()-]*\d")


class Operation(enum.StrEnum):
    """What an operator may pause: the customer-facing money movements."""

    CASH_IN = "cash-in"
    CASH_OUT = "cash-out"
    P2P = "p2p"
    MERCHANT_PAYMENT = "merchant-payment"


class ControlKind(enum.StrEnum):
    OPERATION = "operation"
    PROVIDER = "provider"


class ControlError(Exception):
    """Base of the module's errors; each carries a stable `code` and no HTTP status."""

    code = "control_error"


class InvalidControl(ControlError, ValueError):
    """A control's reason, incident reference, retry-after or target is not acceptable."""

    code = "invalid_control"


class UnknownProviderControl(ControlError, ValueError):
    """The provider named is not configured in this deployment (a typo would otherwise
    silently disable nothing while on-call believes traffic is diverted)."""

    code = "unknown_provider"


class OperationPaused(ControlError):
    """New requests of a paused operation are refused; nothing was written."""

    code = "operation_paused"

    def __init__(self, operation: Operation, retry_after_seconds: int) -> None:
        super().__init__(f"{operation.value} is paused by operations; retry later")
        self.operation = operation
        self.retry_after_seconds = retry_after_seconds


class ProviderDisabled(ControlError):
    """The provider the client named is disabled by operations; nothing was written."""

    code = "provider_unavailable"

    def __init__(self, provider: str, retry_after_seconds: int) -> None:
        super().__init__(f"provider {provider!r} is disabled by operations; retry later or let Kora route")
        self.provider = provider
        self.retry_after_seconds = retry_after_seconds


def looks_like_personal_number(text: str) -> bool:
    return bool(_DIGIT_RUN.search(text)) or any(
        sum(ch.isdigit() for ch in m[0]) >= 8 for m in _INTERNATIONAL_NUMBER.finditer(text)
    )


def validate_reason(reason: str) -> str:
    """The reason, stripped: 3-200 printable characters, no phone or account number."""
    if not isinstance(reason, str):
        raise InvalidControl("a reason is required")
    text = reason.strip()
    if not REASON_MIN_LENGTH <= len(text) <= REASON_MAX_LENGTH:
        raise InvalidControl(f"the reason must be {REASON_MIN_LENGTH} to {REASON_MAX_LENGTH} characters")
    if not text.isprintable():
        raise InvalidControl("the reason has control characters")
    if looks_like_personal_number(text):
        raise InvalidControl("the reason looks like it holds a phone or account number: describe, do not quote")
    return text


def validate_incident(incident: str | None) -> str | None:
    if incident is None:
        return None
    if INCIDENT_REFERENCE.fullmatch(incident) is None or looks_like_personal_number(incident):
        raise InvalidControl("the incident reference must be 1-64 letters, digits or . _ : / # - (e.g. INC-2031)")
    return incident


def validate_retry_after(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_RETRY_AFTER_SECONDS:
        raise InvalidControl(f"retry-after must be 1 to {MAX_RETRY_AFTER_SECONDS} seconds")
    return seconds


def validate_provider_name(name: str, configured: Iterable[str]) -> str:
    if not isinstance(name, str) or PROVIDER_NAME.fullmatch(name) is None:
        raise InvalidControl("a provider name is 1-32 lower-case letters, digits, _ or -")
    known = sorted(configured)
    if name not in known:
        raise UnknownProviderControl(f"provider {name!r} is not configured here (configured: {', '.join(known)})")
    return name


@dataclass(frozen=True, slots=True)
class Control:
    """One switch that is on: an operation paused, or a provider disabled."""

    kind: ControlKind
    target: str
    reason: str
    set_by: str
    set_at: datetime
    retry_after_seconds: int = DEFAULT_RETRY_AFTER_SECONDS
    incident: str | None = None

    def __post_init__(self) -> None:
        if self.kind is ControlKind.OPERATION:
            Operation(self.target)  # raises ValueError on an unknown operation
        elif PROVIDER_NAME.fullmatch(self.target) is None:
            raise InvalidControl("a provider name is 1-32 lower-case letters, digits, _ or -")
        validate_reason(self.reason)
        validate_incident(self.incident)
        validate_retry_after(self.retry_after_seconds)
        if self.set_at.tzinfo is None:
            raise InvalidControl("set_at must be timezone-aware")
        if not self.set_by or len(self.set_by) > ACTOR_MAX_LENGTH:
            raise InvalidControl("set_by must be an actor id")

    @property
    def subject(self) -> str:
        """The audit subject: `operation:cash-out`, `provider:momo`."""
        return f"{self.kind.value}:{self.target}"

    def view(self) -> dict[str, str | int | None]:
        return {
            "reason": self.reason,
            "incident": self.incident,
            "retry_after_seconds": self.retry_after_seconds,
            "set_by": self.set_by,
            "set_at": self.set_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    """Every switch that is on, at one moment: what the payment path reads."""

    paused: Mapping[Operation, Control] = field(default_factory=dict)
    disabled: Mapping[str, Control] = field(default_factory=dict)

    @classmethod
    def of(cls, controls: Iterable[Control]) -> ControlSnapshot:
        paused: dict[Operation, Control] = {}
        disabled: dict[str, Control] = {}
        for control in controls:
            if control.kind is ControlKind.OPERATION:
                paused[Operation(control.target)] = control
            else:
                disabled[control.target] = control
        return cls(paused, disabled)

    def pause_of(self, operation: Operation) -> Control | None:
        return self.paused.get(operation)

    def is_disabled(self, provider: str) -> bool:
        return provider in self.disabled

    def disabled_providers(self) -> dict[str, int]:
        """Disabled provider → its retry-after, for the provider registry."""
        return {name: control.retry_after_seconds for name, control in self.disabled.items()}


EMPTY_SNAPSHOT = ControlSnapshot()


@dataclass(frozen=True, slots=True)
class ControlChange:
    """What an operator's command did: the control now (None when cleared), the one before,
    and whether anything changed (clearing a switch that is off changes nothing)."""

    kind: ControlKind
    target: str
    current: Control | None
    previous: Control | None

    @property
    def changed(self) -> bool:
        return self.current != self.previous


# The provider operation behind each operation that goes through a provider.
PROVIDER_OPERATION: Mapping[Operation, str] = {Operation.CASH_IN: "collect", Operation.CASH_OUT: "disburse"}

# Why a request was refused by a control (the `reason` label of kora_operation_refusals_total).
REFUSED_PAUSED = "operation_paused"
REFUSED_PROVIDER_DISABLED = "provider_disabled"
REFUSED_NO_PROVIDER = "no_provider"


def overview(
    snapshot: ControlSnapshot,
    *,
    providers: Iterable[str],
    routes: Mapping[tuple[str, str], tuple[str, ...]],
) -> dict[str, list[dict[str, object]]]:
    """The operator's view: every operation and configured provider with its switch, and every
    route as configured and as it routes now (an empty `effective` route refuses with 503)."""
    operations: list[dict[str, object]] = []
    for operation in Operation:
        pause = snapshot.pause_of(operation)
        operations.append(
            {"operation": operation.value, "paused": pause is not None, **(pause.view() if pause else {})}
        )
    configured = set(providers)
    provider_rows: list[dict[str, object]] = []
    for name in sorted(configured | set(snapshot.disabled)):
        control = snapshot.disabled.get(name)
        provider_rows.append(
            {"provider": name, "configured": name in configured, "disabled": control is not None}
            | (control.view() if control else {})
        )
    route_rows: list[dict[str, object]] = [
        {
            "operation": operation,
            "currency": currency,
            "configured": list(names),
            "effective": [name for name in names if not snapshot.is_disabled(name)],
        }
        for (operation, currency), names in sorted(routes.items())
    ]
    return {"operations": operations, "providers": provider_rows, "routes": route_rows}
