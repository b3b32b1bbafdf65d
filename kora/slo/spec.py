"""Sloth `prometheus/v1` SLO specs, read strictly: an unknown field, a missing query or an
objective out of range is refused with the file and the field named, never guessed around.

The subset Kora uses (https://sloth.dev/specs/prometheus/): ``version``, ``service``,
``labels``, and per SLO ``name``, ``objective`` (percent), ``description``, ``labels``,
``sli.events.error_query`` / ``total_query`` (or ``sli.raw.error_ratio_query``), each with
``{{.window}}`` where the range goes, and ``alerting`` (``name``, ``labels``, ``annotations``,
``page_alert`` / ``ticket_alert`` with their own ``labels``, ``annotations`` and ``disable``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

SPEC_VERSION = "prometheus/v1"
WINDOW_PLACEHOLDER = "{{.window}}"
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?")
_ALERT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels the generator sets itself: a spec may not override them.
RESERVED_LABELS = frozenset({"sloth_id", "sloth_service", "sloth_slo", "sloth_window", "sloth_severity"})


class SpecError(ValueError):
    """A spec that cannot be turned into rules; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class AlertKind:
    """The page or the ticket alert of an SLO."""

    disabled: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Alerting:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    page: AlertKind
    ticket: AlertKind


@dataclass(frozen=True, slots=True)
class Slo:
    name: str
    objective: Decimal  # percent, 0 < objective < 100
    description: str
    labels: Mapping[str, str]
    # Either both event queries, or the raw ratio query (the other two empty).
    error_query: str
    total_query: str
    error_ratio_query: str
    alerting: Alerting | None

    @property
    def error_budget(self) -> Decimal:
        """The share of events allowed to fail: 1 - objective, exactly (99.9 → 0.001)."""
        return (Decimal(100) - self.objective) / Decimal(100)


@dataclass(frozen=True, slots=True)
class ServiceSlos:
    service: str
    labels: Mapping[str, str]
    slos: tuple[Slo, ...]
    source: str  # the spec's file name, for messages and the generated file's header


def parse_spec(document: Any, *, source: str) -> ServiceSlos:
    """The service and SLOs of one spec document (parsed YAML). Raises SpecError."""
    where = _Where(source)
    root = where.mapping(document, "", {"version", "service", "labels", "slos"})
    if root.get("version") != SPEC_VERSION:
        raise where.error("version", f'must be "{SPEC_VERSION}"')
    service = where.name(root.get("service"), "service")
    labels = where.labels(root.get("labels"), "labels")
    raw_slos = root.get("slos")
    if not isinstance(raw_slos, list) or not raw_slos:
        raise where.error("slos", "must be a non-empty list")
    slos = tuple(_parse_slo(where, item, f"slos[{i}]") for i, item in enumerate(raw_slos))
    names = [slo.name for slo in slos]
    if len(set(names)) != len(names):
        raise where.error("slos", "SLO names must be unique within a service")
    return ServiceSlos(service=service, labels=labels, slos=slos, source=source)


def _parse_slo(where: _Where, item: Any, path: str) -> Slo:
    body = where.mapping(item, path, {"name", "objective", "description", "labels", "sli", "alerting"})
    name = where.name(body.get("name"), f"{path}.name")
    objective = _objective(where, body.get("objective"), f"{path}.objective")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise where.error(f"{path}.description", "must be a string")
    sli = where.mapping(body.get("sli"), f"{path}.sli", {"events", "raw"})
    error_query = total_query = ratio_query = ""
    if ("events" in sli) == ("raw" in sli):
        raise where.error(f"{path}.sli", "needs exactly one of events or raw")
    if "events" in sli:
        events = where.mapping(sli["events"], f"{path}.sli.events", {"error_query", "total_query"})
        error_query = where.query(events.get("error_query"), f"{path}.sli.events.error_query")
        total_query = where.query(events.get("total_query"), f"{path}.sli.events.total_query")
    else:
        raw = where.mapping(sli["raw"], f"{path}.sli.raw", {"error_ratio_query"})
        ratio_query = where.query(raw.get("error_ratio_query"), f"{path}.sli.raw.error_ratio_query")
    alerting = None
    if body.get("alerting") is not None:
        alerting = _parse_alerting(where, body["alerting"], f"{path}.alerting")
    return Slo(
        name=name,
        objective=objective,
        description=description.strip(),
        labels=where.labels(body.get("labels"), f"{path}.labels"),
        error_query=error_query,
        total_query=total_query,
        error_ratio_query=ratio_query,
        alerting=alerting,
    )


def _parse_alerting(where: _Where, item: Any, path: str) -> Alerting:
    body = where.mapping(item, path, {"name", "labels", "annotations", "page_alert", "ticket_alert"})
    name = body.get("name")
    if not isinstance(name, str) or _ALERT_NAME.fullmatch(name) is None:
        raise where.error(f"{path}.name", "must be a Prometheus alert name")
    return Alerting(
        name=name,
        labels=where.labels(body.get("labels"), f"{path}.labels"),
        annotations=where.annotations(body.get("annotations"), f"{path}.annotations"),
        page=_parse_kind(where, body.get("page_alert"), f"{path}.page_alert"),
        ticket=_parse_kind(where, body.get("ticket_alert"), f"{path}.ticket_alert"),
    )


def _parse_kind(where: _Where, item: Any, path: str) -> AlertKind:
    body = where.mapping(item if item is not None else {}, path, {"disable", "labels", "annotations"})
    disabled = body.get("disable", False)
    if not isinstance(disabled, bool):
        raise where.error(f"{path}.disable", "must be true or false")
    return AlertKind(
        disabled=disabled,
        labels=where.labels(body.get("labels"), f"{path}.labels"),
        annotations=where.annotations(body.get("annotations"), f"{path}.annotations"),
    )


def _objective(where: _Where, value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise where.error(path, "must be a number (percent)")
    try:
        objective = Decimal(str(value))
    except InvalidOperation as exc:
        raise where.error(path, "must be a number (percent)") from exc
    if not Decimal(0) < objective < Decimal(100):
        raise where.error(path, "must be between 0 and 100, both excluded")
    return objective


class _Where:
    """Validation helpers that name the file and field of what they refuse."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {path or 'document'} {message}")

    def mapping(self, value: Any, path: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, "must be a mapping")
        unknown = sorted(str(key) for key in value if key not in allowed)
        if unknown:
            raise self.error(path, f"has unknown field(s): {', '.join(unknown)}")
        return value

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or _NAME.fullmatch(value) is None:
            raise self.error(path, "must be lower-case letters, digits and dashes")
        return value

    def query(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, "must be a PromQL query")
        if WINDOW_PLACEHOLDER not in value:
            raise self.error(path, f"must use {WINDOW_PLACEHOLDER} as its range")
        return " ".join(value.split())

    def labels(self, value: Any, path: str) -> Mapping[str, str]:
        if value is None:
            return {}
        labels = self.annotations(value, path)
        for key in labels:
            if _LABEL_NAME.fullmatch(key) is None:
                raise self.error(path, f"has an invalid label name: {key}")
            if key in RESERVED_LABELS:
                raise self.error(path, f"may not set {key} (the generator sets it)")
        return labels

    def annotations(self, value: Any, path: str) -> Mapping[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(path, "must be a mapping")
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str | int | float) or isinstance(item, bool):
                raise self.error(path, "must map names to strings")
            out[key] = str(item).strip()
        return out
